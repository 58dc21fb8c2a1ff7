//! The local API Gateway: serves exactly the HttpApi routes of `template.yaml`, each by the
//! router of the function that owns it (the same router Lambda runs), after adding the request
//! context API Gateway would (`requestContext.requestId`, `http.sourceIp`, route key, stage).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    sync::Arc,
};

use anyhow::{Context as _, anyhow};
use axum::{
    Router,
    extract::{ConnectInfo, Request},
    response::Response,
    routing::{MethodFilter, MethodRouter, any, on},
};
use base64::Engine as _;
use lambda_http::{
    aws_lambda_events::apigw::{
        ApiGatewayV2httpRequestContext, ApiGatewayV2httpRequestContextHttpDescription,
    },
    request::RequestContext,
};
use lumi_shared::{Config, Platform, bootstrap, telemetry::LineSink};
use tokio::net::TcpListener;
use tower::ServiceExt as _;

use crate::{functions, stack::LocalStack, template::Route};

#[derive(Clone, Default)]
pub struct GatewayOptions {
    /// Where the functions' EMF lines go; stdout when unset.
    pub metrics_sink: Option<Arc<dyn LineSink>>,
    /// Environment overrides applied to every function (tests point one at a broken endpoint).
    pub env_overrides: Vec<(String, String)>,
    /// The functions' clock; the system's when unset (tests move a manual one).
    pub clock: Option<Arc<dyn lumi_shared::clock::Clock>>,
}

pub struct Gateway {
    pub router: Router,
    /// The routes served: exactly the template's HttpApi routes.
    pub routes: Vec<Route>,
    /// Each function's platform, by binary.
    pub platforms: BTreeMap<String, Arc<Platform>>,
}

/// API Gateway path syntax to axum's: `{proxy+}` is axum's `{*proxy}`.
pub fn axum_path(path: &str) -> String {
    path.split('/')
        .map(
            |segment| match segment.strip_prefix('{').and_then(|s| s.strip_suffix("+}")) {
                Some(name) => format!("{{*{name}}}"),
                None => segment.to_owned(),
            },
        )
        .collect::<Vec<_>>()
        .join("/")
}

fn method_filter(method: &str) -> anyhow::Result<Option<MethodFilter>> {
    Ok(Some(match method {
        "ANY" => return Ok(None),
        "GET" => MethodFilter::GET,
        "POST" => MethodFilter::POST,
        "PUT" => MethodFilter::PUT,
        "PATCH" => MethodFilter::PATCH,
        "DELETE" => MethodFilter::DELETE,
        "HEAD" => MethodFilter::HEAD,
        "OPTIONS" => MethodFilter::OPTIONS,
        other => anyhow::bail!("unsupported HttpApi method {other}"),
    }))
}

/// A request id shaped like API Gateway's (`JSfpaiXrIAMEa3w=`).
fn gateway_request_id() -> String {
    let bytes: [u8; 11] = rand::random();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

async fn forward(
    app: Router,
    route_key: String,
    peer: Option<SocketAddr>,
    request: Request,
) -> Response {
    // A fresh request, as Lambda would build from the event: nothing of this router's own
    // matching (matched path, path parameters) reaches the function's router.
    let (parts, body) = request.into_parts();
    let mut request = http::Request::builder()
        .method(parts.method.clone())
        .uri(parts.uri.clone())
        .version(parts.version)
        .body(body)
        .unwrap_or_default();
    *request.headers_mut() = parts.headers;
    let mut http = ApiGatewayV2httpRequestContextHttpDescription::default();
    http.method = parts.method;
    http.path = Some(parts.uri.path().to_owned());
    http.protocol = Some("HTTP/1.1".to_owned());
    http.source_ip = Some(peer.map_or_else(|| "127.0.0.1".to_owned(), |p| p.ip().to_string()));
    http.user_agent = request
        .headers()
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut context = ApiGatewayV2httpRequestContext::default();
    context.request_id = Some(gateway_request_id());
    context.route_key = Some(route_key);
    context.stage = Some("$default".to_owned());
    context.account_id = Some(crate::template::LOCAL_ACCOUNT.to_owned());
    context.apiid = Some("local".to_owned());
    context.time_epoch = time_epoch_ms();
    context.http = http;
    request
        .extensions_mut()
        .insert(RequestContext::ApiGatewayV2(context));
    match app.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

fn time_epoch_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

type Forward = std::pin::Pin<Box<dyn Future<Output = Response> + Send>>;

/// The handler for one route key: forwards to `app` with the request context added.
fn forwarding(
    app: Router,
    route_key: String,
) -> impl Fn(Request) -> Forward + Clone + Send + Sync + 'static {
    move |request: Request| {
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        Box::pin(forward(app.clone(), route_key.clone(), peer, request))
    }
}

/// The platform of the function `binary` against `stack`, as the gateway runs it: the
/// template's environment with `options`' overrides, sink and clock, its SDK clients built and
/// the config secret's first read started.
pub fn function_platform(
    stack: &LocalStack,
    binary: &str,
    options: &GatewayOptions,
) -> anyhow::Result<Arc<Platform>> {
    let mut env = stack.function_env(binary)?;
    for (key, value) in &options.env_overrides {
        env.set(key.clone(), value.clone());
    }
    let config = Config::from_env(binary, &env).with_context(|| format!("configuring {binary}"))?;
    let sink = options
        .metrics_sink
        .clone()
        .unwrap_or_else(|| Arc::new(lumi_shared::telemetry::Stdout));
    let clock = options
        .clock
        .clone()
        .unwrap_or_else(|| Arc::new(lumi_shared::clock::SystemClock));
    let platform = Platform::build(config, sink, clock);
    // A long-running local server: build the SDK clients now (they read the trust store)
    // rather than inside the first request's timeouts.
    let _ = platform.db.client();
    platform.secrets.warm();
    Ok(platform)
}

impl Gateway {
    /// Builds every HTTP function of the template against `stack`.
    pub async fn build(stack: &LocalStack, options: &GatewayOptions) -> anyhow::Result<Self> {
        let routes = stack.template.http_routes()?;
        let mut apps: BTreeMap<String, Router> = BTreeMap::new();
        let mut platforms = BTreeMap::new();
        for route in &routes {
            if apps.contains_key(&route.function) {
                continue;
            }
            let routes_fn = functions::routes_of(&route.function).ok_or_else(|| {
                anyhow!(
                    "template.yaml routes to {}, which infra/src/functions.rs does not know",
                    route.function
                )
            })?;
            let platform = function_platform(stack, &route.function, options)?;
            apps.insert(
                route.function.clone(),
                bootstrap::app(platform.clone(), routes_fn),
            );
            platforms.insert(route.function.clone(), platform);
        }

        // `ANY /{proxy+}` catches what no other route matches, as in API Gateway: unknown paths,
        // and methods a path does not declare (browsers' CORS preflights among them, which API
        // Gateway answers itself in AWS with the same settings).
        let catch_all = routes
            .iter()
            .find(|r| r.method == "ANY" && r.path == "/{proxy+}")
            .and_then(|r| apps.get(&r.function).cloned());
        // axum answers HEAD with a path's GET handler; API Gateway matches HEAD only to a route
        // that declares it (template.yaml's `SignedImageHead`): elsewhere HEAD goes where other
        // undeclared methods go.
        let head_declared: BTreeSet<&str> = routes
            .iter()
            .filter(|r| r.method == "HEAD" || r.method == "ANY")
            .map(|r| r.path.as_str())
            .collect();
        let mut by_path: BTreeMap<String, MethodRouter> = BTreeMap::new();
        for route in &routes {
            let app = apps
                .get(&route.function)
                .cloned()
                .ok_or_else(|| anyhow!("no app"))?;
            let handler = forwarding(app.clone(), format!("{} {}", route.method, route.path));
            let entry = by_path.remove(&route.path).unwrap_or_default();
            let entry = match method_filter(&route.method)? {
                Some(filter) => entry.merge(on(filter, handler)),
                None => entry.merge(any(handler)),
            };
            let unmatched = catch_all.clone().unwrap_or(app);
            let entry = if route.method == "GET" && !head_declared.contains(route.path.as_str()) {
                entry.on(
                    MethodFilter::HEAD,
                    forwarding(unmatched.clone(), "ANY /{proxy+}".to_owned()),
                )
            } else {
                entry
            };
            let entry = entry.fallback(forwarding(unmatched, "ANY /{proxy+}".to_owned()));
            by_path.insert(route.path.clone(), entry);
        }
        // The API reference (`make dev`'s /docs): no template route, served beside the API.
        let mut router = crate::api_docs::router(crate::workspace_root());
        for (path, methods) in by_path {
            router = router.route(&axum_path(&path), methods);
        }
        if let Some(app) = catch_all {
            // `/{proxy+}` matches `/` too in API Gateway.
            router = router.fallback(forwarding(app, "ANY /{proxy+}".to_owned()));
        }
        Ok(Self {
            router,
            routes,
            platforms,
        })
    }

    /// Serves on `listener` until `shutdown` completes.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(
            listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_paths_become_wildcards() {
        assert_eq!(axum_path("/{proxy+}"), "/{*proxy}");
        assert_eq!(
            axum_path("/api/v1/orders/{reference}/track"),
            "/api/v1/orders/{reference}/track"
        );
    }
}
