//! The API's routes, method and path, as `template.yaml` declares them (a test in
//! `tests/tests/template.rs` keeps the two equal). API Gateway sends what no route matches to the
//! catch-all `ANY /{proxy+}`, so the function behind it (health) answers for every function:
//! a path some route serves, asked with another method, is 405 with `Allow`; any other path 404.

use http::Method;

/// Every route but the catch-all: (method, path with `{param}` segments).
pub const API_ROUTES: &[(&str, &str)] = &[
    ("POST", "/api/auth/revoke-all"),
    ("POST", "/api/auth/rotate"),
    ("GET", "/api/health"),
    ("GET", "/api/health/liveness"),
    ("GET", "/api/v1/admin/audit-logs"),
    ("GET", "/api/v1/admin/email-deliveries"),
    ("POST", "/api/v1/admin/images"),
    ("POST", "/api/v1/admin/images/uploads"),
    ("POST", "/api/v1/admin/images/uploads/{id}/process"),
    ("GET", "/api/v1/admin/incidents"),
    ("POST", "/api/v1/admin/incidents"),
    ("GET", "/api/v1/admin/incidents/{id}"),
    ("PATCH", "/api/v1/admin/incidents/{id}"),
    ("GET", "/api/v1/admin/inventory/mismatches"),
    ("POST", "/api/v1/admin/inventory/rebalance"),
    ("GET", "/api/v1/admin/orders"),
    ("GET", "/api/v1/admin/orders/{reference}"),
    ("POST", "/api/v1/admin/orders/{reference}/fulfillments"),
    ("POST", "/api/v1/admin/orders/{reference}/refund"),
    (
        "POST",
        "/api/v1/admin/orders/{reference}/refunds/{refund_id}/settle",
    ),
    ("POST", "/api/v1/admin/orders/{reference}/status"),
    ("GET", "/api/v1/admin/payments"),
    ("POST", "/api/v1/admin/payments/{id}/capture"),
    ("POST", "/api/v1/admin/payments/{id}/fail"),
    ("POST", "/api/v1/admin/products"),
    ("PATCH", "/api/v1/admin/products/{id}"),
    ("GET", "/api/v1/admin/refunds"),
    ("POST", "/api/v1/admin/refunds/retry"),
    ("POST", "/api/v1/admin/sessions/revoke-all"),
    ("GET", "/api/v1/admin/settings"),
    ("PUT", "/api/v1/admin/settings"),
    ("GET", "/api/v1/admin/site-content/{key}"),
    ("PUT", "/api/v1/admin/site-content/{key}"),
    ("GET", "/api/v1/admin/users"),
    ("POST", "/api/v1/admin/users/{id}/lock"),
    ("DELETE", "/api/v1/admin/users/{id}/sessions"),
    ("PUT", "/api/v1/admin/users/{id}/tier"),
    ("POST", "/api/v1/admin/users/{id}/unlock"),
    ("GET", "/api/v1/admin/users/{id}/usage"),
    ("GET", "/api/v1/admin/variants/{sku}/ledger"),
    ("POST", "/api/v1/admin/variants/{sku}/stock"),
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/logout"),
    ("GET", "/api/v1/auth/me"),
    ("POST", "/api/v1/auth/register"),
    ("POST", "/api/v1/auth/revoke-all"),
    ("POST", "/api/v1/auth/rotate"),
    ("GET", "/api/v1/cart"),
    ("POST", "/api/v1/cart/items"),
    ("DELETE", "/api/v1/cart/items/{variant}"),
    ("PATCH", "/api/v1/cart/items/{variant}"),
    ("GET", "/api/v1/health/live"),
    ("GET", "/api/v1/health/ready"),
    ("POST", "/api/v1/images/transform"),
    ("GET", "/api/v1/images/{signature}/{options}/{source+}"),
    ("HEAD", "/api/v1/images/{signature}/{options}/{source+}"),
    ("GET", "/api/v1/metrics"),
    ("GET", "/api/v1/orders"),
    ("POST", "/api/v1/orders"),
    ("GET", "/api/v1/orders/{reference}"),
    ("POST", "/api/v1/orders/{reference}/cancel"),
    ("GET", "/api/v1/orders/{reference}/track"),
    ("POST", "/api/v1/payments/webhooks/{provider}"),
    ("GET", "/api/v1/products"),
    ("GET", "/api/v1/products/{id}"),
    ("GET", "/api/v1/site-content/{key}"),
];

/// The methods the API serves at `path` (a concrete request path), in `API_ROUTES` order
/// without repeats; empty when no route has this path.
pub fn allowed_methods(path: &str) -> Vec<Method> {
    let mut methods: Vec<Method> = Vec::new();
    for (method, template) in API_ROUTES {
        if matches(template, path)
            && let Ok(method) = method.parse::<Method>()
            && !methods.contains(&method)
        {
            methods.push(method);
        }
    }
    methods
}

/// Whether `path` fills `template`: the same number of segments, literal segments equal, a
/// `{param}` segment any non-empty segment; a last `{param+}` (greedy) the non-empty rest.
fn matches(template: &str, path: &str) -> bool {
    let mut want = template.split('/');
    let mut got = path.split('/');
    loop {
        match (want.next(), got.next()) {
            (None, None) => return true,
            (Some(w), Some(g)) if w.starts_with('{') && w.ends_with("+}") => {
                return !g.is_empty() && got.all(|g| !g.is_empty());
            }
            (Some(w), Some(g)) if w.starts_with('{') && w.ends_with('}') => {
                if g.is_empty() {
                    return false;
                }
            }
            (Some(w), Some(g)) if w == g => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_path_lists_its_methods_and_others_none() {
        assert_eq!(
            allowed_methods("/api/v1/orders"),
            [Method::GET, Method::POST]
        );
        assert_eq!(
            allowed_methods("/api/v1/cart/items/SKU-1"),
            [Method::DELETE, Method::PATCH]
        );
        assert_eq!(
            allowed_methods("/api/v1/admin/orders/LUMI-1/refund"),
            [Method::POST]
        );
        assert!(allowed_methods("/api/v1/nothing").is_empty());
        assert!(allowed_methods("/api/v1/orders/").is_empty());
        assert!(allowed_methods("/api/v1/orders/a/b/c").is_empty());
        assert_eq!(
            allowed_methods("/api/v1/images/sig/w_80/originals/a.jpeg"),
            [Method::GET, Method::HEAD]
        );
        assert!(allowed_methods("/api/v1/images/sig/w_80/").is_empty());
    }

    #[test]
    fn every_route_is_a_valid_method_and_an_absolute_path() {
        for (method, path) in API_ROUTES {
            assert!(method.parse::<Method>().is_ok(), "{method}");
            assert!(path.starts_with("/api/"), "{path}");
        }
    }
}
