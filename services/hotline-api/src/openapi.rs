//! The OpenAPI description of every endpoint, kept beside the router; a test checks that every
//! route in [`crate::ROUTES`] is described.

use axum::http::header;
use axum::response::IntoResponse;

pub(crate) const SPEC: &str = include_str!("../openapi.json");

pub(crate) async fn spec() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], SPEC)
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_route_is_described() {
        let spec: serde_json::Value = serde_json::from_str(super::SPEC).unwrap();
        for (method, path) in crate::ROUTES {
            assert!(
                spec["paths"][path][method].is_object(),
                "{method} {path} is missing from openapi.json"
            );
        }
        let described = spec["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|p| p.as_object().unwrap().len())
            .sum::<usize>();
        assert_eq!(
            described,
            crate::ROUTES.len(),
            "openapi.json describes routes the router lacks"
        );
    }
}
