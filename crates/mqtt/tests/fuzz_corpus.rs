//! Replays the committed fuzz seed corpus (`fuzz/corpus/mqtt_scanner/`)
//! through the parsers, so that crash regressions added there are checked by
//! `cargo test` too, and checks that every seed named after a packet type
//! still parses as that packet.

use std::path::PathBuf;

use moat_mqtt::{Connect, FixedHeader, ProtocolVersion, Publish, Subscribe, Unsubscribe};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/mqtt_scanner")
}

#[test]
fn seed_corpus_parses() {
    let dir = corpus_dir();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        // The crate is being built outside the moat repository.
        eprintln!("no fuzz corpus at {}, skipping", dir.display());
        return;
    };
    let mut checked = 0;
    for entry in entries {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(&path).unwrap();

        // Whatever the file is, no parser may panic on it.
        let _ = FixedHeader::parse(&bytes);
        let _ = Connect::parse(&bytes);
        for version in ProtocolVersion::ALL {
            let _ = Publish::parse_prefix(&bytes, version);
            let _ = Subscribe::parse(&bytes, version);
            let _ = Unsubscribe::parse(&bytes, version);
        }

        let version = if name.contains("_v5") {
            ProtocolVersion::V5
        } else if name.contains("_v31_") {
            ProtocolVersion::V3_1
        } else {
            ProtocolVersion::V3_1_1
        };
        let kind = name.split('_').next().unwrap_or_default();
        match kind {
            "connect" => {
                let c = Connect::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(c.version, version, "{name}");
            }
            "publish" => {
                let p = Publish::parse_prefix(&bytes, version)
                    .unwrap_or_else(|e| panic!("{name}: {e}"))
                    .unwrap_or_else(|| panic!("{name}: incomplete"));
                assert_eq!(p.total_len, bytes.len(), "{name}");
            }
            "subscribe" => {
                Subscribe::parse(&bytes, version).unwrap_or_else(|e| panic!("{name}: {e}"));
            }
            "unsubscribe" => {
                Unsubscribe::parse(&bytes, version).unwrap_or_else(|e| panic!("{name}: {e}"));
            }
            _ => continue,
        }
        checked += 1;
    }
    assert!(
        checked >= 20,
        "only {checked} named seeds found in {}",
        dir.display()
    );
}
