//! The protected-volume parsers on bytes the host controls: the header (`volume.cfv`), the
//! index plaintext (reachable only after AEAD, but parsed with the same care) and meta objects
//! (parsed before their hash is compared). None may panic or allocate beyond its input; what
//! parses must survive a round trip through its encoder.

#![no_main]

use confidant_shield::format::{ChunkTable, Header, IndexTree};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = Header::parse(data) {
        assert_eq!(&h.encode()[..], data, "header does not re-encode to its bytes");
    }
    if let Ok(t) = IndexTree::parse(data) {
        let again = IndexTree::parse(&t.encode()).expect("encoded index parses");
        assert_eq!(again, t, "index round trip");
    }
    if let Ok(m) = ChunkTable::parse(data) {
        assert_eq!(m.encode(), data, "meta object does not re-encode to its bytes");
    }
});
