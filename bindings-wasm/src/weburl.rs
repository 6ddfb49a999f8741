//! On wasm, config validation parses URLs with the JavaScript engine's WHATWG `URL`: the parser
//! the driver's `WebSocket` applies to the same string, so the module carries no copy of its own
//! (the `url` crate and its IDNA tables were a quarter of the bundle).

use sockline_core::UrlParts;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

#[wasm_bindgen]
extern "C" {
    /// The global `URL` class.
    #[wasm_bindgen(js_name = URL)]
    type JsUrl;
    #[wasm_bindgen(constructor, catch, js_class = URL)]
    fn new(url: &str) -> Result<JsUrl, JsValue>;
    #[wasm_bindgen(method, getter)]
    fn protocol(this: &JsUrl) -> String;
    #[wasm_bindgen(method, getter)]
    fn hostname(this: &JsUrl) -> String;
    #[wasm_bindgen(method, getter)]
    fn username(this: &JsUrl) -> String;
    #[wasm_bindgen(method, getter)]
    fn password(this: &JsUrl) -> String;
    #[wasm_bindgen(method, getter)]
    fn search(this: &JsUrl) -> String;

    /// What `new URL` throws (a `TypeError`).
    type JsError;
    #[wasm_bindgen(method, getter)]
    fn message(this: &JsError) -> String;
}

/// `new URL(raw)`, as the core's [`UrlParts`].
fn parse(raw: &str) -> Result<UrlParts, String> {
    let url = JsUrl::new(raw).map_err(|e| e.unchecked_into::<JsError>().message())?;
    let mut scheme = url.protocol();
    scheme.pop(); // `ws:` → `ws`
    let mut query = url.search();
    if !query.is_empty() {
        query.remove(0); // `?a=b` → `a=b`
    }
    Ok(UrlParts {
        scheme,
        host: url.hostname(),
        username: url.username(),
        password: url.password(),
        query,
    })
}

/// Registers the engine's parser with the core (idempotent). Called by every entry point that
/// checks a config rather than by a `start` hook, which not every host runs (the
/// wasm-bindgen test runner does not).
pub(crate) fn install() {
    // `false` only means it was registered already.
    let _ = sockline_core::set_url_parser(parse);
}
