//! The admin console (`/admin`) and the customer portal (`/portal`), served by `licensor serve`
//! itself: server-rendered HTML, one stylesheet embedded in the binary, no script. Every
//! action goes through the same services as the API, so a license suspended here is suspended
//! on every surface.
//!
//! Sessions: a random token in an HttpOnly, SameSite=Strict cookie scoped to `/admin` or
//! `/portal` (Secure when served over TLS), stored as its SHA-256 digest, expiring after
//! [`SESSION_TTL`]. Every form carries the session's CSRF token; the sign-in forms, which come
//! before a session, use a double-submit cookie. Sign-in attempts count against the API's login
//! rate limit (the same buckets), and every page carries a Content-Security-Policy that allows
//! no script and no framing.

/// `?` for pages of `$area`: an error becomes that area's error page.
macro_rules! tri {
    ($area:expr, $e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return $crate::console::error_page($area, $crate::error::Error::from(e)),
        }
    };
}

/// The signed-in session of `$area`, or (returned) the redirect to its sign-in page.
macro_rules! signed_in {
    ($state:expr, $headers:expr, $area:expr) => {
        match $crate::console::signed(&$state, &$headers, $area).await {
            Ok(s) => s,
            Err(r) => return r,
        }
    };
}

pub mod admin;
pub mod html;
pub mod portal;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

use crate::auth::{self, Principal};
use crate::error::Error;
use crate::model::{Account, User};
use crate::state::AppState;
use crate::store::sessions::{self, Session};
use crate::time;

/// How long a session lasts from sign-in.
pub const SESSION_TTL: i64 = 12 * 3600 * 1000;

const CSS: &str = include_str!("console.css");

/// The two places, each with its own cookie and sign-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    Admin,
    Portal,
}

impl Area {
    pub fn base(self) -> &'static str {
        match self {
            Area::Admin => "/admin",
            Area::Portal => "/portal",
        }
    }
    fn kind(self) -> &'static str {
        match self {
            Area::Admin => "admin",
            Area::Portal => "portal",
        }
    }
    fn cookie(self) -> &'static str {
        match self {
            Area::Admin => "licensor_admin",
            Area::Portal => "licensor_portal",
        }
    }
}

/// The console's routes, with security headers on every answer.
pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .merge(admin::router())
        .merge(portal::router())
        .merge(session_routes(Area::Admin))
        .merge(session_routes(Area::Portal))
        .route("/admin/assets/console.css", get(css))
        .route("/portal/assets/console.css", get(css))
        .layer(middleware::from_fn_with_state(state, security_headers))
}

async fn css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")], CSS)
        .into_response()
}

async fn security_headers(State(_state): State<AppState>, req: Request, next: Next) -> Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    for (name, value) in [
        (
            "content-security-policy",
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}

/// A signed-in request: the session, its user, the account, and the user as a principal.
pub struct Signed {
    pub session: Session,
    pub user: User,
    pub account: Arc<Account>,
    pub principal: Principal,
}

impl Signed {
    pub fn csrf(&self) -> &str {
        &self.session.csrf
    }
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

/// Whether the client reached us over TLS (directly, or through a proxy that says so).
fn secure(state: &AppState, headers: &HeaderMap) -> bool {
    state.tls || headers.get("x-forwarded-proto").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"))
}

fn set_cookie(state: &AppState, headers: &HeaderMap, area: Area, name: &str, value: &str, max_age: i64) -> HeaderValue {
    let secure = if secure(state, headers) { "; Secure" } else { "" };
    let text = format!("{name}={value}; Path={}; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}", area.base());
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("x=; Max-Age=0"))
}

/// The signed-in session of `area`, or a redirect to its sign-in page.
pub async fn signed(state: &AppState, headers: &HeaderMap, area: Area) -> Result<Signed, Response> {
    let to_sign_in = || Redirect::to(&format!("{}/sign-in", area.base())).into_response();
    let Some(token) = cookie_value(headers, area.cookie()) else { return Err(to_sign_in()) };
    let digest = crate::crypto::secrets::token_digest(token);
    let now = time::now_ms();
    let session = match sessions::find(&state.db, &digest, area.kind(), now).await {
        Ok(Some(s)) => s,
        Ok(None) => return Err(to_sign_in()),
        Err(e) => return Err(error_page(area, e)),
    };
    let user = match crate::store::users::find(&state.db, session.account_id, session.user_id).await {
        Ok(Some(u)) => u,
        Ok(None) => return Err(to_sign_in()),
        Err(e) => return Err(error_page(area, e)),
    };
    let account = match state.account(&session.account_id.to_string()).await {
        Ok(Some(a)) => a,
        Ok(None) => return Err(to_sign_in()),
        Err(e) => return Err(error_page(area, e)),
    };
    // A banned user, or an admin demoted since signing in, is signed out.
    let principal = match auth::user_principal(user.clone()) {
        Ok(p) if area == Area::Portal || p.is_admin() => p,
        _ => return Err(to_sign_in()),
    };
    Ok(Signed { session, user, account, principal })
}

/// A form body as name → value (the last value of a repeated name wins).
pub fn form_fields(body: &str) -> HashMap<String, String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(body).unwrap_or_default().into_iter().collect()
}

/// Whether the form carries the session's CSRF token (compared in constant time).
pub fn csrf_ok(s: &Signed, form: &HashMap<String, String>) -> bool {
    let sent = form.get("csrf").map(String::as_str).unwrap_or("");
    same(sent.as_bytes(), s.session.csrf.as_bytes())
}

/// The answer to a form that did not come from this site.
pub fn forbidden(area: Area) -> Response {
    let body = html::page(
        area.base(),
        "Forbidden",
        &[],
        None,
        None,
        "<p>This form expired or did not come from this site. Go back, reload the page and try again.</p>",
    );
    (StatusCode::FORBIDDEN, Html(body)).into_response()
}

/// A page for an error of the layers below, worded for a person.
pub fn error_page(area: Area, e: Error) -> Response {
    let status = match &e {
        Error::NotFound { .. } => StatusCode::NOT_FOUND,
        Error::Forbidden { .. } => StatusCode::FORBIDDEN,
        Error::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
        Error::Internal(_) | Error::Database(_) => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    let detail = describe(&e);
    let title = if status == StatusCode::NOT_FOUND { "Not found" } else { "That did not work" };
    let body = html::page(area.base(), title, &[], None, None, &format!("<p>{}</p>", html::esc(&detail)));
    let page = (status, Html(body)).into_response();
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        return crate::api::with_fault(page, &e);
    }
    page
}

/// An error in words for a person: the detail, prefixed by the attribute it is about.
pub fn describe(e: &Error) -> String {
    use crate::error::Source;
    let about = |location: &Source, detail: &str| match location {
        Source::Pointer(p) if p.rsplit('/').nth(1) == Some("attributes") => {
            format!("{} {detail}", p.rsplit('/').next().unwrap_or(""))
        }
        _ => detail.to_string(),
    };
    match e {
        Error::BadRequest { detail, location, .. }
        | Error::Invalid { detail, location, .. }
        | Error::Unprocessable { detail, location } => about(location, detail),
        Error::Unauthorized { detail, .. }
        | Error::Forbidden { detail, .. }
        | Error::Conflict { detail, .. }
        | Error::TooManyRequests { detail, .. } => detail.to_string(),
        Error::NotFound { kind, .. } => format!("That {kind} does not exist, or is not yours to see."),
        Error::Database(_) | Error::Internal(_) => "Something went wrong on the server; it has been logged.".into(),
    }
}

fn same(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Where to go after an action: back to `to`, with a message shown once.
pub fn done(to: &str, message: &str) -> Response {
    let sep = if to.contains('?') { '&' } else { '?' };
    let q = serde_urlencoded::to_string([("done", message)]).unwrap_or_default();
    Redirect::to(&format!("{to}{sep}{q}")).into_response()
}

// ---- signing in and out -------------------------------------------------------------------

fn sign_in_form(state: &AppState, area: Area, csrf: &str, account: &str, email: &str, error: Option<&str>) -> String {
    let _ = state;
    let mut fields =
        html::input("account", "Account (id or slug; empty for this server's account)", "text", account, false);
    fields.push_str(&html::input("email", "Email", "email", email, true));
    fields.push_str(&html::input("password", "Password", "password", "", true));
    fields.push_str(&html::input("otp", "Authenticator code (if you set up a second factor)", "text", "", false));
    let title = match area {
        Area::Admin => "Sign in to the console",
        Area::Portal => "Sign in to your licenses",
    };
    html::page(
        area.base(),
        title,
        &[],
        None,
        error,
        &html::form(&format!("{}/sign-in", area.base()), csrf, &fields, "Sign in"),
    )
}

/// `GET …/sign-in`: the form, with a fresh double-submit token.
pub async fn sign_in_page(state: &AppState, headers: &HeaderMap, area: Area) -> Response {
    let token = crate::crypto::secrets::generate_token("csrf");
    let mut r = Html(sign_in_form(state, area, &token, "", "", None)).into_response();
    r.headers_mut().append(header::SET_COOKIE, set_cookie(state, headers, area, "licensor_csrf", &token, 3600));
    r
}

/// `POST …/sign-in`.
pub async fn sign_in(
    state: &AppState,
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    area: Area,
    body: &str,
) -> Response {
    let form = form_fields(body);
    let field = |k: &str| form.get(k).map(|v| v.trim().to_string()).unwrap_or_default();
    let (account_text, email, password) =
        (field("account"), field("email"), form.get("password").cloned().unwrap_or_default());
    let sent = form.get("csrf").map(String::as_str).unwrap_or("");
    let cookie = cookie_value(headers, "licensor_csrf").unwrap_or("");
    if sent.is_empty() || !same(sent.as_bytes(), cookie.as_bytes()) {
        return forbidden(area);
    }
    let again = |status: StatusCode, message: &str| {
        (status, Html(sign_in_form(state, area, sent, &account_text, &email, Some(message)))).into_response()
    };
    // The API's login limit, the same buckets: guessing here is guessing there.
    if let Some(rate) = state.limiter.config.logins {
        let ip = crate::ratelimit::client_ip(
            peer.map_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |p| p.ip()),
            headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()),
            &state.limiter.config.trusted_proxies,
        )
        .to_string();
        let bucket = crate::ratelimit::bucket("login", &[ip.as_bytes(), email.to_lowercase().as_bytes()]);
        match crate::ratelimit::Limiter::hit_exact(&state.db, &bucket, rate, time::now_ms()).await {
            Ok(v) if !v.allowed => {
                return again(
                    StatusCode::TOO_MANY_REQUESTS,
                    &format!("Too many sign-in attempts; try again in {} seconds.", v.retry_after),
                )
            }
            Ok(_) => {}
            Err(e) => e.log("rate limit counter"),
        }
    }
    let account =
        if account_text.is_empty() { state.default_account().await } else { state.account(&account_text).await };
    let account = match account {
        Ok(Some(a)) => a,
        Ok(None) => return again(StatusCode::UNAUTHORIZED, "Email or password is incorrect."),
        Err(e) => return error_page(area, e),
    };
    let otp = field("otp");
    let login = auth::Login {
        db: &state.db,
        master: &state.master,
        otp: auth::Otp::Given(Some(otp.as_str()).filter(|c| !c.is_empty())),
    };
    let user = match auth::password_login(&login, &account, &email, &password).await {
        Ok(u) => u,
        Err(Error::Forbidden { .. }) => return again(StatusCode::FORBIDDEN, "This user is banned."),
        Err(Error::Unauthorized { code: Some(code), .. }) if code == "OTP_REQUIRED" => {
            return again(StatusCode::UNAUTHORIZED, "Enter the code from your authenticator app.")
        }
        Err(Error::Unauthorized { code: Some(code), .. }) if code == "OTP_INVALID" => {
            return again(StatusCode::UNAUTHORIZED, "The authenticator code is not valid (or was used already).")
        }
        Err(Error::Unauthorized { .. }) => return again(StatusCode::UNAUTHORIZED, "Email or password is incorrect."),
        Err(e) => return error_page(area, e),
    };
    if area == Area::Admin && !auth::ADMIN_ROLES.contains(&user.role.as_str()) {
        return again(StatusCode::FORBIDDEN, "Only admins may use the console; customers sign in at /portal.");
    }
    let token = crate::crypto::secrets::generate_token("sess");
    let now = time::now_ms();
    let session = Session {
        digest: crate::crypto::secrets::token_digest(&token),
        account_id: account.id,
        user_id: user.id,
        kind: area.kind().into(),
        csrf: crate::crypto::secrets::generate_token("csrf"),
        expires_at: now + SESSION_TTL,
        created_at: now,
    };
    if let Err(e) = sessions::insert(&state.db, &session).await {
        return error_page(area, e);
    }
    tracing::info!(user = %user.id, area = area.kind(), "signed in");
    let mut r = Redirect::to(area.base()).into_response();
    let h = r.headers_mut();
    h.append(header::SET_COOKIE, set_cookie(state, headers, area, area.cookie(), &token, SESSION_TTL / 1000));
    h.append(header::SET_COOKIE, set_cookie(state, headers, area, "licensor_csrf", "", 0));
    r
}

/// `POST …/sign-out`.
pub async fn sign_out(state: &AppState, headers: &HeaderMap, area: Area, body: &str) -> Response {
    let s = match signed(state, headers, area).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if !csrf_ok(&s, &form_fields(body)) {
        return forbidden(area);
    }
    if let Err(e) = sessions::delete(&state.db, &s.session.digest).await {
        return error_page(area, e);
    }
    let mut r = Redirect::to(&format!("{}/sign-in", area.base())).into_response();
    r.headers_mut().append(header::SET_COOKIE, set_cookie(state, headers, area, area.cookie(), "", 0));
    r
}

/// A license file as a download (`<license id>.lic`), signed as `check-out` signs it.
pub async fn license_file_download(state: &AppState, s: &Signed, id: &str, area: Area) -> Response {
    let l = match crate::service::licenses::find(&state.db, &s.principal, s.account.id, id).await {
        Ok(l) => l,
        Err(e) => return error_page(area, e),
    };
    let opts = crate::service::checkout::FileOptions::defaults(&l);
    match crate::service::checkout::license_file(state, &s.account, l, opts).await {
        Ok(file) => {
            let disposition = format!("attachment; filename=\"{}.lic\"", file.license.id);
            let mut r = file.certificate.into_response();
            let h = r.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
            if let Ok(v) = HeaderValue::from_str(&disposition) {
                h.insert(header::CONTENT_DISPOSITION, v);
            }
            r
        }
        Err(e) => error_page(area, e),
    }
}

/// `…/sign-in` (the form, and signing in) and `…/sign-out` of one area.
fn session_routes(area: Area) -> Router<AppState> {
    use axum::routing::post;
    let form = move |State(state): State<AppState>, headers: HeaderMap| async move {
        sign_in_page(&state, &headers, area).await
    };
    let submit = move |State(state): State<AppState>, req: Request| async move {
        let peer = peer(&req);
        let (parts, body) = req.into_parts();
        let body = axum::body::to_bytes(body, 64 * 1024).await.unwrap_or_default();
        sign_in(&state, peer, &parts.headers, area, std::str::from_utf8(&body).unwrap_or("")).await
    };
    let leave = move |State(state): State<AppState>, headers: HeaderMap, body: axum::body::Bytes| async move {
        sign_out(&state, &headers, area, std::str::from_utf8(&body).unwrap_or("")).await
    };
    Router::new()
        .route(&format!("{}/sign-in", area.base()), get(form).post(submit))
        .route(&format!("{}/sign-out", area.base()), post(leave))
}

/// The client's address, when the server recorded it.
pub fn peer(req: &Request) -> Option<SocketAddr> {
    req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0)
}
