//! The admin port's view of standalone programs (never the proxy port's):
//!
//! - `GET /programs`: every supervised program with its route, upstream, group, models, state, since when,
//!   PID and requests in flight (JSON);
//! - `POST /programs/unload` and `POST /programs/<namespace>/<name>/unload`: stop all, or one, once their
//!   in-flight requests finish (`202`, listing the programs that were starting or running);
//! - `GET /programs/<namespace>/<name>/output?lines=N`: the last `N` (default 100) lines of its output;
//! - `GET /programs/<namespace>/<name>/output/stream?lines=N`: the same lines, then every new one, as
//!   server-sent events (`data: <line>`), until the client leaves.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use httpscale_core::admin::{AdminBody, full, text};
use k8s_openapi::jiff::{Timestamp, Unit};
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use crate::routes::Routes;
use crate::standalone::Standalone;
use crate::standalone::handle::ProgramHandle;
use crate::standalone::output::LINES_KEPT;

const DEFAULT_LINES: usize = 100;

/// What a `/programs` request asks for.
enum Action<'a> {
    List,
    UnloadAll,
    Unload(&'a Arc<ProgramHandle>),
    Output(&'a ProgramHandle),
    Stream(&'a ProgramHandle),
}

/// Answers a `/programs` request from the routes and the programs (standalone mode); `None` for any other path.
pub fn answer<B>(routes: &Routes, programs: Option<&Standalone>, req: &Request<B>) -> Option<Response<AdminBody>> {
    let rest = req.uri().path().strip_prefix("/programs")?;
    if !(rest.is_empty() || rest.starts_with('/')) {
        return None;
    }
    let programs = programs.map(Standalone::programs).unwrap_or_default();
    let not_found = || Some(text(StatusCode::NOT_FOUND, "Not Found\n"));
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let action = match segments.as_slice() {
        [] => Action::List,
        ["unload"] => Action::UnloadAll,
        [ns, name, action @ ..] => {
            let Some(program) = programs.get(&format!("{ns}/{name}")) else { return not_found() };
            match action {
                ["unload"] => Action::Unload(program),
                ["output"] => Action::Output(program),
                ["output", "stream"] => Action::Stream(program),
                _ => return not_found(),
            }
        }
        _ => return not_found(),
    };
    let allowed: &[Method] = match action {
        Action::UnloadAll | Action::Unload(_) => &[Method::POST],
        Action::List | Action::Output(_) | Action::Stream(_) => &[Method::GET, Method::HEAD],
    };
    if !allowed.contains(req.method()) {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n");
        let allow = allowed.iter().map(Method::as_str).collect::<Vec<_>>().join(", ");
        r.headers_mut().insert(ALLOW, HeaderValue::from_str(&allow).unwrap_or(HeaderValue::from_static("GET")));
        return Some(r);
    }
    let lines = lines_param(req.uri().query());
    Some(match action {
        Action::List => list(routes, programs.values()),
        Action::UnloadAll => unload(programs.values()),
        Action::Unload(p) => unload(std::iter::once(p)),
        Action::Output(p) => output(p, lines),
        Action::Stream(p) => output_stream(p, lines),
    })
}

fn lines_param(query: Option<&str>) -> usize {
    query
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("lines=")?.parse::<usize>().ok()))
        .unwrap_or(DEFAULT_LINES)
        .min(LINES_KEPT)
}

fn json_answer(status: StatusCode, value: &serde_json::Value) -> Response<AdminBody> {
    let mut r = Response::new(full(value.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn list<'a>(routes: &Routes, programs: impl Iterator<Item = &'a Arc<ProgramHandle>>) -> Response<AdminBody> {
    let table = routes.table();
    let programs: Vec<_> = programs
        .map(|p| {
            let status = p.status();
            let models: Vec<String> = table
                .routes()
                .filter(|r| r.route.key == p.key)
                .flat_map(|r| r.route.rules.iter().flat_map(|rule| rule.models.iter().map(ToString::to_string)))
                .collect();
            json!({
                "route": p.key.to_string(),
                "upstream": p.upstream,
                "group": p.group,
                "models": models,
                "state": status.state.as_str(),
                "since": Timestamp::try_from(status.since).ok().and_then(|t| t.round(Unit::Millisecond).ok()).map(|t| t.to_string()),
                "pid": status.pid,
                "inFlight": p.in_flight(),
            })
        })
        .collect();
    json_answer(StatusCode::OK, &json!({ "programs": programs }))
}

fn unload<'a>(programs: impl Iterator<Item = &'a Arc<ProgramHandle>>) -> Response<AdminBody> {
    let unloading: Vec<String> = programs.filter(|p| p.unload()).map(|p| p.key.to_string()).collect();
    tracing::info!(?unloading, "unload asked on the admin port");
    json_answer(StatusCode::ACCEPTED, &json!({ "unloading": unloading }))
}

fn output(program: &ProgramHandle, lines: usize) -> Response<AdminBody> {
    let mut body = program.output.last(lines).join("\n");
    if !body.is_empty() {
        body.push('\n');
    }
    let mut r = Response::new(full(body));
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

fn event(line: &str) -> Frame<Bytes> {
    Frame::data(Bytes::from(format!("data: {line}\n\n")))
}

fn output_stream(program: &ProgramHandle, lines: usize) -> Response<AdminBody> {
    let (backlog, feed) = program.output.follow(lines);
    let backlog = futures_util::stream::iter(backlog.into_iter().map(|l| Ok::<_, Infallible>(event(&l))));
    let live = futures_util::stream::unfold(feed, |mut feed| async move {
        let frame = match feed.recv().await {
            Ok(line) => event(&line),
            Err(RecvError::Lagged(n)) => Frame::data(Bytes::from(format!(": {n} lines skipped\n\n"))),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok::<_, Infallible>(frame), feed))
    });
    let mut r = Response::new(StreamBody::new(futures_util::StreamExt::chain(backlog, live)).boxed_unsync());
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    r.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}
