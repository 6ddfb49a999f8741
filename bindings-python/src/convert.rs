//! Type conversion only: core values to Python objects (through their canonical serde form) and
//! Python objects to JSON values. No decision about the session is made here.
//!
//! Not `pythonize`: message payloads are `serde_json::RawValue`s, which it would hand over as
//! strings of JSON; here they are parsed straight into Python objects (no intermediate tree),
//! and Python input errors name the path of the bad value (`data.items[3]: NaN is not JSON`).
//! Core values go through their canonical JSON text, so Python sees exactly the one schema.

use std::borrow::Cow;
use std::fmt;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use pyo3::BoundObject;
use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::ser::Serialize;
use serde_json::{Map, Value};

/// Deepest nesting converted either way (deeper input is refused, never a stack overflow).
pub const MAX_DEPTH: usize = 128;

/// Converts any serializable core value to the Python object of its canonical JSON form: the
/// core's own serialization (the one schema every runtime shares) parsed straight into Python
/// objects. Only the hot outputs skip the text (`output_to_py`).
pub fn to_py<'py, T: Serialize + ?Sized>(
    py: Python<'py>,
    value: &T,
) -> PyResult<Bound<'py, PyAny>> {
    let text = serde_json::to_string(value)
        .map_err(|e| PyValueError::new_err(format!("cannot convert to JSON: {e}")))?;
    json_to_py(py, &text)
}

/// Parses JSON text straight into Python objects (no intermediate tree).
pub fn json_to_py<'py>(py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyAny>> {
    let mut de = serde_json::Deserializer::from_str(text);
    let v = PySeed { py }
        .deserialize(&mut de)
        .map_err(|e| PyValueError::new_err(format!("invalid JSON: {e}")))?;
    de.end()
        .map_err(|e| PyValueError::new_err(format!("invalid JSON: {e}")))?;
    Ok(v)
}

// ---- JSON text -> Python ------------------------------------------------------------------

/// Deserializes any JSON value into the equivalent Python object.
#[derive(Clone, Copy)]
struct PySeed<'py> {
    py: Python<'py>,
}

impl<'de, 'py> DeserializeSeed<'de> for PySeed<'py> {
    type Value = Bound<'py, PyAny>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

fn int_obj<'py, T: IntoPyObject<'py, Error = std::convert::Infallible>>(
    py: Python<'py>,
    v: T,
) -> Bound<'py, PyAny> {
    match v.into_pyobject(py) {
        Ok(o) => o.into_any().into_bound(),
        Err(e) => match e {},
    }
}

fn de_err<E: serde::de::Error>(e: PyErr) -> E {
    E::custom(e.to_string())
}

impl<'de, 'py> Visitor<'de> for PySeed<'py> {
    type Value = Bound<'py, PyAny>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(PyBool::new(self.py, v).to_owned().into_any())
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(int_obj(self.py, v))
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(int_obj(self.py, v))
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(PyFloat::new(self.py, v).into_any())
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(PyString::new(self.py, v).into_any())
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(self.py.None().into_bound(self.py))
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        self.visit_unit()
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let list = PyList::empty(self.py);
        while let Some(v) = seq.next_element_seed(self)? {
            list.append(v).map_err(de_err)?;
        }
        Ok(list.into_any())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let dict = PyDict::new(self.py);
        while let Some(k) = map.next_key::<Cow<'de, str>>()? {
            let v = map.next_value_seed(self)?;
            dict.set_item(PyString::new(self.py, &k), v)
                .map_err(de_err)?;
        }
        Ok(dict.into_any())
    }
}

// ---- Python -> JSON -----------------------------------------------------------------------

/// Converts a Python object built from JSON types (`None`, `bool`, `int`, `float`, `str`, `list`,
/// `tuple`, `dict` with `str` keys) to a JSON value; `what` names it in error messages.
/// Other types raise `TypeError`; out-of-range integers, NaN and infinities raise `ValueError`.
pub fn py_to_value(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Value> {
    let mut path = String::from(what);
    to_value(obj, &mut path, 0)
}

fn to_value(obj: &Bound<'_, PyAny>, path: &mut String, depth: usize) -> PyResult<Value> {
    if depth > MAX_DEPTH {
        return Err(PyValueError::new_err(format!(
            "{path} nests deeper than {MAX_DEPTH} levels (or refers to itself)"
        )));
    }
    if obj.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if obj.is_instance_of::<PyInt>() {
        if let Ok(i) = obj.extract::<i64>() {
            return Ok(Value::from(i));
        }
        if let Ok(u) = obj.extract::<u64>() {
            return Ok(Value::from(u));
        }
        return Err(PyValueError::new_err(format!(
            "{path}: integer {obj} does not fit in 64 bits"
        )));
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        let v = f.value();
        return serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| PyValueError::new_err(format!("{path}: {v} is not a JSON number")));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Value::String(s.to_cow()?.into_owned()));
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        let mut map = Map::new();
        for (k, v) in d.iter() {
            let Ok(ks) = k.cast::<PyString>() else {
                return Err(PyTypeError::new_err(format!(
                    "{path}: dict keys must be str, got {}",
                    type_name(&k)
                )));
            };
            let key = ks.to_cow()?.into_owned();
            let len = path.len();
            path.push_str(&format!("[{key:?}]"));
            let value = to_value(&v, path, depth + 1)?;
            path.truncate(len);
            map.insert(key, value);
        }
        return Ok(Value::Object(map));
    }
    let items: Option<Vec<Bound<'_, PyAny>>> = if let Ok(l) = obj.cast::<PyList>() {
        Some(l.iter().collect())
    } else if let Ok(t) = obj.cast::<PyTuple>() {
        Some(t.iter().collect())
    } else {
        None
    };
    if let Some(items) = items {
        let mut out = Vec::with_capacity(items.len());
        for (i, v) in items.iter().enumerate() {
            let len = path.len();
            path.push_str(&format!("[{i}]"));
            out.push(to_value(v, path, depth + 1)?);
            path.truncate(len);
        }
        return Ok(Value::Array(out));
    }
    Err(PyTypeError::new_err(format!(
        "{path}: {} is not a JSON type (use None, bool, int, float, str, list or dict)",
        type_name(obj)
    )))
}

/// The Python type name of `obj`, for error messages.
pub fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "object".into())
}

/// The dict of one output, in the canonical form. `message` events (the hot path of a receiving
/// session) and `transmit`s are built directly with interned keys; every other output goes
/// through its canonical JSON text. Both give the same dict (a test compares them).
pub fn output_to_py<'py>(
    py: Python<'py>,
    o: &sockline_core::Output,
) -> PyResult<Bound<'py, PyAny>> {
    use pyo3::intern;
    use sockline_core::{Event, Output};
    match o {
        Output::Event(Event::Message {
            subscriptions,
            message,
        }) => {
            let env = PyDict::new(py);
            env.set_item(intern!(py, "type"), PyString::new(py, &message.msg_type))?;
            env.set_item(intern!(py, "data"), json_to_py(py, message.data.get())?)?;
            if let Some(t) = &message.timestamp {
                env.set_item(intern!(py, "timestamp"), PyString::new(py, t))?;
            }
            if let Some(id) = &message.id {
                env.set_item(intern!(py, "id"), PyString::new(py, id))?;
            }
            if let Some(p) = message.project_id {
                env.set_item(intern!(py, "projectId"), int_obj(py, p))?;
            }
            if let Some(epoch) = &message.epoch {
                env.set_item(intern!(py, "epoch"), PyString::new(py, epoch))?;
            }
            if let Some(offset) = message.offset {
                env.set_item(intern!(py, "offset"), int_obj(py, offset))?;
            }
            let subs = PyList::new(py, subscriptions.iter().map(|s| s.0))?;
            let d = PyDict::new(py);
            d.set_item(intern!(py, "kind"), intern!(py, "message"))?;
            d.set_item(intern!(py, "subscriptions"), subs)?;
            d.set_item(intern!(py, "message"), env)?;
            Ok(d.into_any())
        }
        Output::Transmit { text } => {
            let d = PyDict::new(py);
            d.set_item(intern!(py, "kind"), intern!(py, "transmit"))?;
            d.set_item(intern!(py, "text"), PyString::new(py, text))?;
            Ok(d.into_any())
        }
        other => to_py(py, other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sockline_core::{Config, Output, Session, Timestamp};

    /// Outputs of a session that received a message, then a transmit (a send while open).
    fn outputs() -> Vec<Output> {
        let mut s = Session::new(Config::new("ws://h/ws"), 1, Timestamp::ZERO).unwrap();
        s.subscribe(Timestamp::ZERO, "*", None).unwrap();
        s.connect(Timestamp::ZERO).unwrap();
        s.transport_opened(Timestamp::ZERO);
        s.frame(
            Timestamp::ZERO,
            r#"{"type":"welcome","data":{"sessionId":"s1"}}"#,
        );
        s.frame(
            Timestamp::ZERO,
            r#"{"type":"n","data":{"b":[1,2.5,null],"a":"x"},"timestamp":"t","id":"i","projectId":3,"epoch":"e","offset":1}"#,
        );
        s.send(
            Timestamp::ZERO,
            sockline_core::SendRequest::new("chat", serde_json::json!({"k": 1})),
        )
        .unwrap();
        let mut out = Vec::new();
        loop {
            match s.poll_output() {
                Output::Timeout(_) => break,
                o => out.push(o),
            }
        }
        out
    }

    #[test]
    fn the_fast_path_builds_the_same_dicts_as_the_canonical_json() {
        Python::initialize();
        Python::attach(|py| {
            let outs = outputs();
            assert!(outs
                .iter()
                .any(|o| matches!(o, Output::Event(sockline_core::Event::Message { .. }))));
            for o in &outs {
                let fast = output_to_py(py, o).unwrap();
                let parsed = json_to_py(py, &o.to_json()).unwrap();
                assert!(fast.eq(&parsed).unwrap(), "{fast} != {parsed}");
                // Same key order as the canonical JSON.
                let keys = |d: &Bound<'_, PyAny>| {
                    d.call_method0("keys").unwrap().str().unwrap().to_string()
                };
                assert_eq!(keys(&fast), keys(&parsed));
            }
        });
    }

    #[test]
    fn python_values_convert_to_json_or_raise_the_right_error() {
        Python::initialize();
        Python::attach(|py| {
            let v = py
                .eval(
                    c"{'a': [1, 2.5, None, True, 'x', (3,)], 'b': 2**63}",
                    None,
                    None,
                )
                .unwrap();
            assert_eq!(
                py_to_value(&v, "data").unwrap(),
                serde_json::json!({"a": [1, 2.5, null, true, "x", [3]], "b": 9223372036854775808u64})
            );
            let bad_key = py.eval(c"{1: 2}", None, None).unwrap();
            assert!(py_to_value(&bad_key, "data")
                .unwrap_err()
                .is_instance_of::<PyTypeError>(py));
            let big = py.eval(c"2**64", None, None).unwrap();
            assert!(py_to_value(&big, "data")
                .unwrap_err()
                .is_instance_of::<PyValueError>(py));
            let nan = py.eval(c"float('nan')", None, None).unwrap();
            assert!(py_to_value(&nan, "data")
                .unwrap_err()
                .is_instance_of::<PyValueError>(py));
            let set = py.eval(c"{1}", None, None).unwrap();
            let err = py_to_value(&set, "data").unwrap_err();
            assert!(err.is_instance_of::<PyTypeError>(py));
            assert!(err.to_string().contains("set"));
        });
    }
}
