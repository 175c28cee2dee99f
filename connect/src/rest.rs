//! Kafka's Connect REST API as plain functions over a [`Herder`]: [`handle`] takes a
//! request and gives the response, with Kafka's paths, bodies and status codes, so tests
//! and the simulator can drive a worker without HTTP; [`crate::http`] puts it on a socket.

use std::collections::BTreeMap;

use serde_json::{json, Value as Json};

use crate::api::ConnectorType;
use crate::config::Config;
use crate::entities::{
    ActiveTopics, CreateConnectorRequest, ErrorMessage, PluginInfo, ServerInfo, TopicsInfo,
};
use crate::error::ConnectError;
use crate::http::{percent_decode, percent_encode, HttpRequest, HttpResponse};
use crate::worker::{Herder, Leadership, TargetState};

/// How long a forwarded request may take at the leader (Kafka's request timeout).
pub const FORWARD_TIMEOUT_MS: u64 = 90_000;

fn error(status: u16, message: impl Into<String>) -> HttpResponse {
    HttpResponse::json(
        status,
        &ErrorMessage {
            error_code: status,
            message: message.into(),
        },
    )
}

fn from_error(e: ConnectError) -> HttpResponse {
    error(e.http_status(), e.to_string())
}

fn answer<T: serde::Serialize>(status: u16, result: Result<T, ConnectError>) -> HttpResponse {
    match result {
        Ok(v) => HttpResponse::json(status, &v),
        Err(e) => from_error(e),
    }
}

fn done(status: u16, result: Result<(), ConnectError>) -> HttpResponse {
    match result {
        Ok(()) => HttpResponse::empty(status),
        Err(e) => from_error(e),
    }
}

fn parse_body<T: serde::de::DeserializeOwned>(req: &HttpRequest) -> Result<T, HttpResponse> {
    serde_json::from_slice(&req.body)
        .map_err(|e| error(400, format!("Cannot deserialize the request body: {e}")))
}

/// Jersey's answers for paths and methods that do not exist.
fn no_route() -> HttpResponse {
    error(404, "HTTP 404 Not Found")
}

fn no_method() -> HttpResponse {
    error(405, "HTTP 405 Method Not Allowed")
}

fn bool_param(req: &HttpRequest, name: &str) -> bool {
    req.param(name)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// Whether Kafka's distributed herder does this only on the leader: every write but
/// pause, resume, resetting active topics and plugin validation, which any worker does,
/// and a task restart, which the herder sends on to the task's owner itself.
fn needs_leader(method: &str, segs: &[&str]) -> bool {
    !matches!(
        (method, segs),
        ("GET", _)
            | (_, ["connector-plugins", ..])
            | ("PUT", ["connectors", _, "pause" | "resume"])
            | ("POST", ["connectors", _, "tasks", _, "restart"])
            | ("PUT", ["connectors", _, "topics", "reset"])
    )
}

/// Kafka's forwarding: a worker that cannot answer sends the request on (to the leader,
/// or from the leader to a task's owner), marked `forward=true`; that hop marks it
/// `forward=false`; a third is refused.
async fn forward(to_url: &str, req: &HttpRequest) -> HttpResponse {
    let hops_left = match req.param("forward") {
        None => "true",
        Some(v) if v.eq_ignore_ascii_case("true") => "false",
        Some(_) => return error(
            409,
            "Cannot complete request because of a conflicting operation (e.g. worker rebalance)",
        ),
    };
    let authority = match crate::http::url_authority(to_url) {
        Ok(a) => a,
        Err(e) => return error(500, format!("The URL {to_url} is unusable: {e}")),
    };
    let mut target = req.path.clone();
    let mut sep = '?';
    for (k, v) in req.query.iter().filter(|(k, _)| k != "forward") {
        target.push_str(&format!("{sep}{}={}", percent_encode(k), percent_encode(v)));
        sep = '&';
    }
    target.push_str(&format!("{sep}forward={hops_left}"));
    let body = (!req.body.is_empty()).then_some(req.body.as_slice());
    match crate::http::request(&authority, &req.method, &target, body, FORWARD_TIMEOUT_MS).await {
        Ok((status, body)) => {
            // The worker asked answers a creation with its own Location, as Kafka's does.
            let location = (status == 201)
                .then(|| serde_json::from_slice::<Json>(&body).ok())
                .flatten()
                .and_then(|v| {
                    v["name"]
                        .as_str()
                        .map(|n| format!("/connectors/{}", percent_encode(n)))
                });
            HttpResponse {
                status,
                body: (!body.is_empty()).then_some(body),
                location,
            }
        }
        Err(e) => error(
            500,
            format!("Could not forward the request to {to_url}: {e}"),
        ),
    }
}

/// The path's segments, percent-decoded.
fn path_segments(path: &str) -> Vec<String> {
    path.trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode(s, false))
        .collect()
}

/// Answers one REST request; in a distributed cluster, writes go to the leader.
pub async fn handle(herder: &Herder, req: HttpRequest) -> HttpResponse {
    let segments = path_segments(&req.path);
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    if needs_leader(&req.method, &segs) {
        match herder.leadership().await {
            Leadership::Leader => {}
            Leadership::Follower(url) => return forward(&url, &req).await,
            Leadership::Rebalancing => {
                return error(
                    409,
                    "Cannot complete request momentarily due to no known leader URL, likely because a rebalance was underway.",
                )
            }
        }
    }
    route(herder, req).await
}

async fn route(herder: &Herder, req: HttpRequest) -> HttpResponse {
    let segments = path_segments(&req.path);
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    let method = req.method.as_str();
    match segs.as_slice() {
        [] => match method {
            "GET" => HttpResponse::json(
                200,
                &ServerInfo {
                    version: crate::VERSION.to_string(),
                    commit: format!("runnel-{}", crate::VERSION),
                    kafka_cluster_id: herder.kafka_cluster_id().await,
                },
            ),
            _ => no_method(),
        },
        ["connectors"] => match method {
            "GET" => list_connectors(herder, &req).await,
            "POST" => create_connector(herder, &req).await,
            _ => no_method(),
        },
        ["connectors", name] => match method {
            "GET" => answer(200, herder.connector_info(name).await),
            "DELETE" => done(204, herder.delete_connector(name).await),
            _ => no_method(),
        },
        ["connectors", name, "config"] => match method {
            "GET" => answer(200, herder.connector_info(name).await.map(|i| i.config)),
            "PUT" => put_config(herder, name, &req).await,
            "PATCH" => patch_config(herder, name, &req).await,
            _ => no_method(),
        },
        ["connectors", name, "status"] if method == "GET" => {
            answer(200, herder.connector_status(name).await)
        }
        ["connectors", name, "tasks"] if method == "GET" => {
            answer(200, herder.task_configs(name).await)
        }
        ["connectors", name, "tasks", task, "status"] if method == "GET" => {
            match task.parse::<u32>() {
                Ok(t) => answer(200, herder.task_status(name, t).await),
                Err(_) => no_route(),
            }
        }
        ["connectors", name, "tasks", task, "restart"] if method == "POST" => {
            match task.parse::<u32>() {
                Ok(t) => match herder.restart_task(name, t).await {
                    // The task runs on another worker: Kafka's leader forwards it there.
                    Err(ConnectError::RequestTarget { url, .. }) => forward(&url, &req).await,
                    result => done(204, result),
                },
                Err(_) => no_route(),
            }
        }
        ["connectors", name, "pause"] if method == "PUT" => done(
            202,
            herder.set_target_state(name, TargetState::Paused).await,
        ),
        ["connectors", name, "resume"] if method == "PUT" => done(
            202,
            herder.set_target_state(name, TargetState::Started).await,
        ),
        ["connectors", name, "stop"] if method == "PUT" => done(
            204,
            herder.set_target_state(name, TargetState::Stopped).await,
        ),
        ["connectors", name, "restart"] if method == "POST" => {
            let include_tasks = bool_param(&req, "includeTasks");
            let only_failed = bool_param(&req, "onlyFailed");
            let result = herder
                .restart_connector(name, include_tasks, only_failed)
                .await;
            // Kafka keeps the old answer (204, no body) for a plain restart.
            if !include_tasks && !only_failed {
                done(204, result.map(|_| ()))
            } else {
                answer(202, result)
            }
        }
        ["connectors", name, "topics"] if method == "GET" => match herder.active_topics(name).await
        {
            Ok(topics) => {
                let mut out = ActiveTopics::new();
                out.insert(name.to_string(), TopicsInfo { topics });
                HttpResponse::json(200, &out)
            }
            Err(e) => from_error(e),
        },
        ["connectors", name, "offsets"] => match method {
            "GET" => answer(200, herder.offsets(name).await),
            "DELETE" => answer(
                200,
                herder
                    .reset_offsets(name)
                    .await
                    .map(|message| json!({"message": message})),
            ),
            "PATCH" => {
                let body: ConnectorOffsetsPatch = match parse_body(&req) {
                    Ok(b) => b,
                    Err(r) => return r,
                };
                let entries = body
                    .offsets
                    .unwrap_or_default()
                    .into_iter()
                    .map(|o| (o.partition.unwrap_or_default(), o.offset))
                    .collect();
                answer(
                    200,
                    herder
                        .alter_offsets(name, entries)
                        .await
                        .map(|message| json!({"message": message})),
                )
            }
            _ => no_method(),
        },
        ["connectors", name, "topics", "reset"] if method == "PUT" => {
            done(202, herder.reset_active_topics(name).await)
        }
        ["connector-plugins"] if method == "GET" => {
            let connectors_only = req
                .param("connectorsOnly")
                .is_none_or(|v| !v.eq_ignore_ascii_case("false"));
            HttpResponse::json(200, &plugins(herder, connectors_only))
        }
        ["connector-plugins", plugin, "config"] if method == "GET" => answer(
            200,
            crate::validate::plugin_config(herder.plugins(), plugin),
        ),
        ["connector-plugins", plugin, "config", "validate"] if method == "PUT" => {
            let config: Config = match parse_body(&req) {
                Ok(c) => c,
                Err(r) => return r,
            };
            if let Some(included) = config.get("connector.class") {
                let short = |s: &str| {
                    s.rsplit('.')
                        .next()
                        .unwrap_or(s)
                        .trim_end_matches("Connector")
                        .to_string()
                };
                if !short(included).ends_with(&short(plugin)) {
                    return error(400, format!("Included connector type {included} does not match request type {plugin}"));
                }
            }
            answer(200, herder.validate(plugin, &config))
        }
        ["connectors", ..] | ["connector-plugins", ..] => {
            if segs.len() <= 6 && known_path(&segs) {
                no_method()
            } else {
                no_route()
            }
        }
        _ => no_route(),
    }
}

/// A `PATCH /offsets` body, where an offset may be null (remove it).
#[derive(serde::Deserialize)]
struct ConnectorOffsetsPatch {
    offsets: Option<Vec<OffsetPatch>>,
}

#[derive(serde::Deserialize)]
struct OffsetPatch {
    partition: Option<serde_json::Map<String, Json>>,
    offset: Option<serde_json::Map<String, Json>>,
}

/// Whether a path exists with some other method (then the answer is 405).
fn known_path(segs: &[&str]) -> bool {
    matches!(
        segs,
        [
            "connectors",
            _,
            "status" | "tasks" | "pause" | "resume" | "stop" | "restart" | "topics" | "offsets"
        ] | ["connectors", _, "tasks", _, "status" | "restart"]
            | ["connectors", _, "topics", "reset"]
            | ["connector-plugins"]
            | ["connector-plugins", _, "config"]
            | ["connector-plugins", _, "config", "validate"]
    )
}

async fn list_connectors(herder: &Herder, req: &HttpRequest) -> HttpResponse {
    let names = match herder.connectors().await {
        Ok(n) => n,
        Err(e) => return from_error(e),
    };
    let expand: Vec<&str> = req
        .query
        .iter()
        .filter(|(k, _)| k == "expand")
        .map(|(_, v)| v.as_str())
        .collect();
    if req.param("expand").is_none() {
        return HttpResponse::json(200, &names);
    }
    let mut out: BTreeMap<String, serde_json::Map<String, Json>> = BTreeMap::new();
    for name in names {
        let mut expansions = serde_json::Map::new();
        for e in &expand {
            match *e {
                "status" => {
                    if let Ok(s) = herder.connector_status(&name).await {
                        expansions.insert("status".into(), json!(s));
                    }
                }
                "info" => {
                    if let Ok(i) = herder.connector_info(&name).await {
                        expansions.insert("info".into(), json!(i));
                    }
                }
                other => tracing::info!(expansion = other, "Ignoring unknown expansion type"),
            }
        }
        out.insert(name, expansions);
    }
    HttpResponse::json(200, &out)
}

async fn create_connector(herder: &Herder, req: &HttpRequest) -> HttpResponse {
    let body: CreateConnectorRequest = match parse_body(req) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let name = body.name.unwrap_or_default().trim().to_string();
    let Some(mut config) = body.config else {
        return error(
            400,
            "The request has no \"config\"; send {\"name\": ..., \"config\": {...}}",
        );
    };
    if let Err(r) = check_name(&name, &mut config) {
        return r;
    }
    let initial = match body
        .initial_state
        .as_deref()
        .map(TargetState::parse_initial)
        .transpose()
    {
        Ok(i) => i,
        Err(e) => return from_error(e),
    };
    match herder
        .put_connector_config(&name, config, false, initial)
        .await
    {
        Ok((_, info)) => {
            let mut r = HttpResponse::json(201, &info);
            r.location = Some(format!("/connectors/{}", percent_encode(&name)));
            r
        }
        Err(e) => from_error(e),
    }
}

/// Kafka's check that a config's `name` matches the URL's, and its filling in when absent.
fn check_name(name: &str, config: &mut Config) -> Result<(), HttpResponse> {
    match config.get("name") {
        Some(included) if included != name => Err(error(
            400,
            format!("Connector name configuration ({included}) doesn't match connector name in the URL ({name})"),
        )),
        Some(_) => Ok(()),
        None => {
            config.insert("name".into(), name.to_string());
            Ok(())
        }
    }
}

async fn put_config(herder: &Herder, name: &str, req: &HttpRequest) -> HttpResponse {
    let mut config: Config = match parse_body(req) {
        Ok(c) => c,
        Err(r) => return r,
    };
    if let Err(r) = check_name(name, &mut config) {
        return r;
    }
    match herder.put_connector_config(name, config, true, None).await {
        Ok((created, info)) => {
            let mut r = HttpResponse::json(if created { 201 } else { 200 }, &info);
            if created {
                r.location = Some(format!("/connectors/{}", percent_encode(name)));
            }
            r
        }
        Err(e) => from_error(e),
    }
}

async fn patch_config(herder: &Herder, name: &str, req: &HttpRequest) -> HttpResponse {
    let patch: BTreeMap<String, Option<String>> = match parse_body(req) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let mut config = match herder.connector_info(name).await {
        Ok(info) => info.config,
        Err(e) => return from_error(e),
    };
    for (k, v) in patch {
        match v {
            Some(v) => config.insert(k, v),
            None => config.remove(&k),
        };
    }
    if let Err(r) = check_name(name, &mut config) {
        return r;
    }
    answer(
        200,
        herder
            .put_connector_config(name, config, true, None)
            .await
            .map(|(_, info)| info),
    )
}

fn plugins(herder: &Herder, connectors_only: bool) -> Vec<PluginInfo> {
    let mut out: Vec<PluginInfo> = herder
        .plugins()
        .all()
        .iter()
        .map(|p| PluginInfo {
            class: p.class.clone(),
            plugin_type: match p.connector_type {
                ConnectorType::Source => "source".into(),
                ConnectorType::Sink => "sink".into(),
            },
            version: p.version.clone(),
        })
        .collect();
    if !connectors_only {
        let more = [
            (crate::converter::BYTE_ARRAY_CONVERTER, "converter"),
            (crate::converter::JSON_CONVERTER, "converter"),
            (crate::converter::STRING_CONVERTER, "converter"),
        ]
        .into_iter()
        .chain(
            crate::transforms::smt::TRANSFORMS
                .iter()
                .map(|c| (*c, "transformation")),
        )
        .chain(
            crate::transforms::smt::PREDICATES
                .iter()
                .map(|c| (*c, "predicate")),
        );
        out.extend(more.map(|(class, kind)| PluginInfo {
            class: class.to_string(),
            plugin_type: kind.to_string(),
            version: crate::VERSION.to_string(),
        }));
    }
    out
}
