//! Golden traces: each `tests/traces/NAME.json` replays to exactly `NAME.out` (reviewed by hand
//! when written; a diff here means behaviour changed and the change must be deliberate).

use std::path::Path;

#[test]
fn traces_replay_to_their_golden_output() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/traces");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let trace =
            sockline_core::Trace::from_json(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let want = std::fs::read_to_string(path.with_extension("out")).unwrap();
        let got = trace.replay().unwrap();
        let got: String = got.iter().map(|l| format!("{l}\n")).collect();
        assert_eq!(
            got,
            want,
            "{} no longer replays to its .out",
            path.display()
        );
        // Round trip through the canonical form changes nothing.
        let again = sockline_core::Trace::from_json(&trace.to_json()).unwrap();
        assert_eq!(again, trace);
        checked += 1;
    }
    assert!(checked >= 3, "expected the golden traces, found {checked}");
}
