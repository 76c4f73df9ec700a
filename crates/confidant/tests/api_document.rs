//! The OpenAPI document the coordinator serves is the one generated from `confidant-api`'s
//! types, and it lists exactly the routes the coordinator answers: every path and method is
//! asked of the running coordinator (axum answers 405 for a method a path does not serve).

mod coord;

use std::collections::BTreeSet;

use coord::{Client, setup};

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "DELETE", "PATCH"];

#[test]
fn the_served_document_is_generated_and_lists_every_route() {
    let dir = tempfile::tempdir().unwrap();
    let (home, _, _, _) = setup(dir.path());
    let coordinator = coord::start(&home);
    let anon = Client {
        url: coordinator.url.clone(),
        cert: None,
    };
    let (code, served) = anon.call("GET", "/api/v1/openapi.json", None);
    assert_eq!(code, 200, "{served}");
    assert_eq!(served, confidant_api::openapi::document());
    assert_eq!(served["openapi"], "3.1.0");

    let documented: BTreeSet<(String, String)> = served["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(|m| (m.to_uppercase(), path.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    let paths: BTreeSet<&String> = documented.iter().map(|(_, p)| p).collect();
    let mut answered = BTreeSet::new();
    for path in paths {
        let concrete = path.replace("{name}", "x");
        for method in METHODS {
            let (code, body) = anon.call(method, &concrete, None);
            assert_ne!(code, 0, "{method} {concrete}: no answer");
            if code == 405 {
                continue;
            }
            // A served route never falls through to the unknown-route answer.
            assert!(
                !(code == 404
                    && body["error"]["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("no such endpoint"))),
                "{method} {concrete}: {body}"
            );
            answered.insert((method.to_string(), path.clone()));
        }
    }
    assert_eq!(answered, documented);
    // And a path the document does not have is the unknown-route answer, with the error body.
    let (code, body) = anon.call("GET", "/api/v1/nothing", None);
    assert_eq!(code, 404);
    assert_eq!(body["error"]["code"], "not_found");
}
