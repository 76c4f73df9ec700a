//! What the coordinator answers, as the client reads it (`confidant_client::decode_answer`):
//! every answer type of the API and the error body from arbitrary bytes. None of it may panic;
//! a bad answer is an error naming the field.

#![no_main]

use confidant_api as api;
use confidant_client::{ApiError, decode_answer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_answer::<api::Status>("status", 200, data);
    let _ = decode_answer::<api::Attestation>("attestation", 200, data);
    let _ = decode_answer::<api::ImageKey>("image-key", 200, data);
    let _ = decode_answer::<api::ManifestRecord>("manifest", 200, data);
    let _ = decode_answer::<api::ManifestSet>("manifest set", 201, data);
    let _ = decode_answer::<api::Nonce>("nonce", 200, data);
    let _ = decode_answer::<api::Activation>("activate", 200, data);
    let _ = decode_answer::<api::SecretView>("secret", 200, data);
    let _ = decode_answer::<api::VolumeState>("volume state", 200, data);
    let _ = decode_answer::<api::AuditPage>("audit", 200, data);
    let _ = decode_answer::<api::RecoveryShares>("recovery", 200, data);
    let _ = decode_answer::<api::RecoverProgress>("recover", 200, data);
    let e = ApiError::from_answer(422, data);
    let _ = (e.detail_lines(), e.to_string());
});
