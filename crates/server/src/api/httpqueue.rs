//! The httpqueue-compatible timer API (seed 000): `POST /timers`, `GET /timers/{id}` and the
//! router's `GET /health`, with the seed's status codes and error texts. Errors carry both shapes the seed's clients may read:
//! its running code's `{"error":{"code","details"}}` and its swagger's `{"Code","Details"}`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use sluice_engine::timers::TimerSpec;
use sluice_engine::{EngineError, MessageId};

use super::body::RawBody;
use super::AppState;

/// `GET /health`: the seed router's liveness answer, `200` with the body `ok` (text/plain).
pub async fn health() -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; charset=utf-8",
        )],
        "ok",
    )
        .into_response()
}

fn error(status: StatusCode, details: &str) -> Response {
    let code = status.as_u16();
    (
        status,
        Json(json!({
            "error": {"code": code, "details": details},
            "Code": code,
            "Details": details,
        })),
    )
        .into_response()
}

#[derive(Deserialize)]
struct SetTimer {
    #[serde(default)]
    hours: i64,
    #[serde(default)]
    minutes: i64,
    #[serde(default)]
    seconds: i64,
    #[serde(default)]
    url: String,
}

/// `POST /timers`: 201 `{"id"}`; when due, `POST {url}/{id}` with an empty body.
pub async fn set_timer(State(s): State<AppState>, body: RawBody) -> Response {
    let Ok(req) = serde_json::from_slice::<SetTimer>(&body.bytes) else {
        return error(
            StatusCode::BAD_REQUEST,
            "Bad Request - cannot set timers, bad request payload",
        );
    };
    if sluice_engine::validate::validate_url("url", &req.url).is_err() {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid params - invalid param: invalid 'POST' field 'url'",
        );
    }
    let total = req
        .hours
        .checked_mul(3600)
        .and_then(|h| req.minutes.checked_mul(60).and_then(|m| h.checked_add(m)))
        .and_then(|hm| hm.checked_add(req.seconds));
    let total = match total {
        Some(t) if t >= 0 && t <= sluice_engine::limits::DELAY_MAX_S as i64 => t,
        _ => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid params - invalid param: the delay (hours, minutes, seconds) must add up to 0 to 31536000 seconds",
            )
        }
    };
    let mut spec = TimerSpec::http(req.url);
    spec.append_id = true;
    spec.due_at = s.engine.now() + total * 1000;
    match s.engine.timers().create(spec, None).await {
        Ok(id) => (StatusCode::CREATED, Json(json!({"id": id.to_string()}))).into_response(),
        Err(EngineError::InvalidArgument { message, .. }) => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("Invalid params - invalid param: {message}"),
        ),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("Internal error - {e}"),
        ),
    }
}

/// `GET /timers/{id}`: `{"id","ID","time_left"}`, time_left 0 once due or finished.
pub async fn get_timer(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    let t = match MessageId::parse(&id) {
        Some(i) => s.engine.timers().get_fresh(i).await.ok().flatten(),
        None => None,
    };
    let Some(t) = t else {
        return error(StatusCode::NOT_FOUND, "Not found - timer does not exist");
    };
    let now = s.engine.now();
    let left = if t.status.is_finished() {
        0
    } else {
        t.due_at.map_or(0, |d| ((d - now).max(0) + 999) / 1000)
    };
    let id = t.id.to_string();
    Json(json!({"id": id, "ID": id, "time_left": left})).into_response()
}
