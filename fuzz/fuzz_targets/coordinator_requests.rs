//! What workloads send the coordinator before anything is verified: the `POST activate` body,
//! the CSR in it, the image manifest whose layer keys it asks for, and the `POST
//! volumes/{name}/state` body. None of it may panic.

#![no_main]

use confidant_coordinator::api::{parse_activate_request, parse_volume_commit};
use confidant_coordinator::ca::check_csr;
use confidant_image::crypt::provider::wrapped_layer_keys;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = parse_activate_request(data) {
        let _ = check_csr(&req.csr).map(|c| c.spki_sha256());
        if let Some(m) = &req.image_manifest {
            let _ = wrapped_layer_keys(m);
        }
    }
    let _ = check_csr(data).map(|c| c.spki_sha256());
    let _ = wrapped_layer_keys(data);
    let _ = parse_volume_commit(data);
});
