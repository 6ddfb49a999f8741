//! The URL parser config validation relies on: the `url` crate (cargo feature `url`, on by
//! default) or one the host registers with [`set_url_parser`].
//!
//! Both are WHATWG URL parsers. The wasm binding registers the JavaScript engine's own `URL`,
//! the very parser its `WebSocket` applies to the same string, so the browser bundle need not
//! carry a second copy with its IDNA tables (the `url` crate was a quarter of that bundle).

use std::sync::OnceLock;

/// The fields of a parsed (WHATWG) URL that config validation looks at.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UrlParts {
    /// The scheme, lowercase, without its `:` (`ws`, `wss`).
    pub scheme: String,
    /// The host as serialized (`example.com`, `[::1]`); empty when there is none.
    pub host: String,
    /// The username; empty when there is none.
    pub username: String,
    /// The password; empty when there is none.
    pub password: String,
    /// The query without its `?`; empty when there is none.
    pub query: String,
}

/// Parses a URL into [`UrlParts`], or says why it is not one.
pub type UrlParser = fn(&str) -> Result<UrlParts, String>;

static PARSER: OnceLock<UrlParser> = OnceLock::new();

/// Registers the URL parser config validation uses from now on, in place of the `url` crate's
/// (a build without the `url` feature must register one before validating any config). It must
/// be a WHATWG URL parser. Returns false, changing nothing, when one was registered already.
pub fn set_url_parser(parser: UrlParser) -> bool {
    PARSER.set(parser).is_ok()
}

/// Parses `raw` with the registered parser, else the `url` crate's.
pub(crate) fn parse(raw: &str) -> Result<UrlParts, String> {
    if let Some(parser) = PARSER.get() {
        return parser(raw);
    }
    parse_builtin(raw)
}

#[cfg(feature = "url")]
fn parse_builtin(raw: &str) -> Result<UrlParts, String> {
    let url = url::Url::parse(raw).map_err(|e| e.to_string())?;
    Ok(UrlParts {
        scheme: url.scheme().to_string(),
        host: url.host_str().unwrap_or_default().to_string(),
        username: url.username().to_string(),
        password: url.password().unwrap_or_default().to_string(),
        query: url.query().unwrap_or_default().to_string(),
    })
}

#[cfg(not(feature = "url"))]
fn parse_builtin(_raw: &str) -> Result<UrlParts, String> {
    Err("no URL parser: build sockline-core with its `url` feature or call set_url_parser".into())
}

/// Whether the query has a key named `token` or `access_token` (any case), decoded as WHATWG
/// `URLSearchParams` (and the `url` crate's `query_pairs`) decode it.
pub(crate) fn query_has_token(query: &str) -> bool {
    form_urlencoded::parse(query.as_bytes())
        .any(|(k, _)| k.eq_ignore_ascii_case("token") || k.eq_ignore_ascii_case("access_token"))
}

#[cfg(all(test, feature = "url"))]
mod tests {
    use super::*;

    #[test]
    fn builtin_parts() {
        let p = parse_builtin("WSS://u:p@Example.COM:8443/a?x=1&Token=2#f").unwrap();
        assert_eq!(
            p,
            UrlParts {
                scheme: "wss".into(),
                host: "example.com".into(),
                username: "u".into(),
                password: "p".into(),
                query: "x=1&Token=2".into(),
            }
        );
        assert!(query_has_token(&p.query));
        assert!(query_has_token("a&access%5Ftoken"));
        assert!(!query_has_token("tokens=1&x=token"));
        assert_eq!(parse_builtin("ws://[::1]:9/").unwrap().host, "[::1]");
        assert!(parse_builtin("not a url").is_err());
    }
}
