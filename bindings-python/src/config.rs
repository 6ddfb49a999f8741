//! Keyword arguments to a core `Config`: serialized to JSON, merged onto the defaults,
//! deserialized and validated by the core.
//!
//! A key is a top-level config key (`user_id=`, `max_frame_bytes=`), a section given as a dict
//! (`reconnect={"initial_ms": 100}`, merged key by key onto the section's defaults), a section key
//! flattened with an underscore (`reconnect_initial_ms=100`), or a dotted path passed through
//! `**{"reconnect.initial_ms": 100}`.

use pyo3::prelude::*;
use pyo3::types::PyDict;
use serde_json::{Map, Value};
use sockline_core::Config;

use crate::convert::py_to_value;
use crate::errors::{config_error, config_key_error, config_type_error};

/// Sections whose keys may also be given flattened as `section_key`.
const SECTIONS: [&str; 5] = ["reconnect", "heartbeat", "outbox", "typing", "streams"];

/// The first positional argument of a session: one URL, or a list of hubs' URLs (`urls`).
#[derive(FromPyObject)]
pub enum Urls {
    /// `url`.
    One(String),
    /// `urls`: reconnect attempts rotate through them.
    Many(Vec<String>),
}

/// Builds and validates the config for `url` from keyword arguments.
pub fn config_from_kwargs(
    py: Python<'_>,
    url: &Urls,
    kwargs: Option<&Bound<'_, PyDict>>,
) -> PyResult<Config> {
    let base = match url {
        Urls::One(url) => Config::new(url.as_str()),
        Urls::Many(urls) => Config {
            urls: urls.clone(),
            ..Config::default()
        },
    };
    let defaults =
        serde_json::to_value(base).map_err(|e| config_key_error(py, "url", e.to_string()))?;
    let mut merged = defaults.clone();
    let mut given: Vec<(String, Vec<String>, Value)> = Vec::new();
    if let Some(kw) = kwargs {
        for (k, v) in kw.iter() {
            let key: String = k.extract()?;
            let path = key_path(py, &key, &defaults)?;
            let value = py_to_value(&v, &key).map_err(|e| retag(py, &key, e))?;
            merge_at(&mut merged, &path, value.clone());
            given.push((key, path, value));
        }
    }
    match serde_json::from_value::<Config>(merged) {
        Ok(cfg) => {
            cfg.validate().map_err(|e| config_error(py, &e))?;
            Ok(cfg)
        }
        Err(whole) => Err(blame(py, &defaults, &given)
            .unwrap_or_else(|| config_key_error(py, "", format!("invalid config: {whole}")))),
    }
}

/// Keeps a conversion error's class (TypeError or ValueError) but names the key.
fn retag(py: Python<'_>, key: &str, e: PyErr) -> PyErr {
    if e.is_instance_of::<pyo3::exceptions::PyTypeError>(py) {
        config_type_error(key, e.value(py).to_string())
    } else {
        config_key_error(py, key, format!("invalid config `{key}`: {}", e.value(py)))
    }
}

/// Where a keyword lands in the config JSON.
fn key_path(py: Python<'_>, key: &str, defaults: &Value) -> PyResult<Vec<String>> {
    let obj = defaults
        .as_object()
        .expect("config serializes to an object");
    if key == "url" || key == "urls" {
        return Err(config_key_error(
            py,
            key,
            format!(
                "`{key}` is the first positional argument (a URL or a list of them), not a keyword"
            ),
        ));
    }
    if obj.contains_key(key) {
        return Ok(vec![key.to_string()]);
    }
    if key.contains('.') {
        let path: Vec<String> = key.split('.').map(str::to_string).collect();
        if obj.get(&path[0]).is_some_and(Value::is_object) && path.len() == 2 {
            return Ok(path);
        }
    }
    for section in SECTIONS {
        if let Some(rest) = key.strip_prefix(section).and_then(|r| r.strip_prefix('_')) {
            if obj
                .get(section)
                .and_then(Value::as_object)
                .is_some_and(|s| s.contains_key(rest))
            {
                return Ok(vec![section.to_string(), rest.to_string()]);
            }
        }
    }
    Err(config_key_error(
        py,
        key,
        format!("unknown config key `{key}`"),
    ))
}

/// Puts `value` at `path`, merging a dict into a section key by key.
fn merge_at(root: &mut Value, path: &[String], value: Value) {
    let mut target = root;
    for p in &path[..path.len() - 1] {
        target = target
            .as_object_mut()
            .expect("sections are objects")
            .entry(p.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    let last = &path[path.len() - 1];
    let slot = target
        .as_object_mut()
        .expect("sections are objects")
        .entry(last.clone())
        .or_insert(Value::Null);
    match (slot, value) {
        (Value::Object(dst), Value::Object(src)) if SECTIONS.contains(&last.as_str()) => {
            for (k, v) in src {
                dst.insert(k, v);
            }
        }
        (slot, value) => *slot = value,
    }
}

/// Finds the first keyword (or section key) that alone makes the defaults fail to deserialize.
fn blame(
    py: Python<'_>,
    defaults: &Value,
    given: &[(String, Vec<String>, Value)],
) -> Option<PyErr> {
    for (key, path, value) in given {
        let mut candidates: Vec<(String, Vec<String>, Value)> = Vec::new();
        if let (Value::Object(sub), 1) = (value, path.len()) {
            if SECTIONS.contains(&path[0].as_str()) {
                for (k, v) in sub {
                    candidates.push((
                        format!("{}.{k}", path[0]),
                        vec![path[0].clone(), k.clone()],
                        v.clone(),
                    ));
                }
            }
        }
        candidates.push((path.join("."), path.clone(), value.clone()));
        for (name, p, v) in candidates {
            let mut one = defaults.clone();
            merge_at(&mut one, &p, v);
            if let Err(e) = serde_json::from_value::<Config>(one) {
                let msg = e.to_string();
                let shown = if name == *key {
                    format!("`{name}`")
                } else {
                    format!("`{name}` (keyword `{key}`)")
                };
                return Some(if msg.starts_with("invalid type") {
                    config_type_error(&name, format!("{msg} (keyword `{key}`)"))
                } else {
                    config_key_error(py, &name, format!("invalid config {shown}: {msg}"))
                });
            }
        }
    }
    None
}
