//! The evidence envelope as an operator pastes it: JSON envelope, hex, base64 or raw bytes,
//! with and without a `--tee` override, then parse-only inspection of whatever decodes.
#![no_main]

use confidant_attest::{Evidence, Tee, inspect};
use libfuzzer_sys::fuzz_target;

fn check(data: &[u8], tee: Option<Tee>) {
    let Ok(ev) = Evidence::decode(data, tee) else {
        return;
    };
    if let Some(t) = tee {
        assert_eq!(ev.tee, t, "decode ignored the --tee override");
    }
    let _ = inspect(&ev);
    // The envelope round-trips through its JSON form. (Collateral is free-form JSON whose
    // floats serde_json may not round-trip bit for bit, so only the typed fields are compared.)
    let back = Evidence::decode(ev.to_json().as_bytes(), None).expect("our own JSON decodes");
    assert_eq!(back.tee, ev.tee);
    assert_eq!(back.evidence, ev.evidence);
    assert_eq!(back.endorsements.vcek, ev.endorsements.vcek);
    assert_eq!(back.endorsements.cert_chain, ev.endorsements.cert_chain);
    assert_eq!(
        back.endorsements.collateral.is_some(),
        ev.endorsements.collateral.is_some()
    );
}

fuzz_target!(|data: &[u8]| {
    check(data, None);
    for tee in Tee::ALL {
        check(data, Some(tee));
    }
});
