//! The caller of a surface whose account comes from the credential (`/api/licensing/v1`,
//! core/v1, `/metrics`): one way from an `Authorization` header to an account and a
//! [`Principal`], shared by those surfaces; each says only which credentials it takes and how
//! it words a refusal ([`Wire`]).
//!
//! The Keygen surface names its account in the path and authenticates lazily (validate-key
//! treats a bad license key as anonymous), so it keeps its own `Ctx` over the same `auth`
//! functions.

use std::marker::PhantomData;
use std::sync::Arc;

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use axum::response::IntoResponse;

use crate::auth::{self, Credential, Principal};
use crate::error::Error;
use crate::model::Account;
use crate::state::AppState;

/// Why a request has no caller, for the surface to word.
#[derive(Debug)]
pub enum Refusal {
    /// No `Authorization` header.
    Missing,
    /// A header that is no credential at all.
    Malformed(Error),
    /// A license key, where the surface takes tokens (and perhaps passwords) only.
    LicenseKey,
    /// An email and password, where the surface takes tokens only.
    Password,
    /// An email and password on a server with several accounts and no default one.
    NoDefaultAccount,
    /// No such token, or a wrong email or password: `auth`'s error.
    Unknown(Error),
    /// A known credential that may not be used now (an expired token, a banned user):
    /// `auth`'s error.
    Invalid(Error),
    /// The token belongs to another account than the one the path names (or the path names
    /// none): the account is not there for this caller.
    OtherAccount,
    /// The database or the server failed: a 500 on every surface, never a refusal.
    Failed(Error),
}

impl Refusal {
    /// `auth`'s error for a credential it does not know, unless the server failed.
    fn unknown(e: Error) -> Refusal {
        match e {
            Error::Database(_) | Error::Internal(_) => Refusal::Failed(e),
            e => Refusal::Unknown(e),
        }
    }

    /// `auth`'s error for a credential it knows and refuses, unless the server failed.
    fn invalid(e: Error) -> Refusal {
        match e {
            Error::Database(_) | Error::Internal(_) => Refusal::Failed(e),
            e => Refusal::Invalid(e),
        }
    }
}

/// What a surface takes and how it refuses.
pub trait Wire: Send + Sync + 'static {
    /// Email and password log into the server's default account (`--account`).
    const PASSWORDS: bool;
    /// The path parameter naming the account, checked against the token's.
    const ACCOUNT_PARAM: Option<&'static str>;
    type Rejection: IntoResponse;
    /// A refusal in this surface's format (`parts`: for answers that depend on the method).
    fn refuse(refusal: Refusal, parts: &Parts) -> Self::Rejection;
    /// What this surface asks of a caller beyond authenticating.
    fn admit(_principal: &Principal) -> Result<(), Self::Rejection> {
        Ok(())
    }
}

/// The authenticated caller of a surface `W`.
pub struct Actor<W> {
    pub state: AppState,
    pub account: Arc<Account>,
    pub principal: Principal,
    wire: PhantomData<W>,
}

impl<W> Actor<W> {
    pub fn db(&self) -> &crate::db::Db {
        &self.state.db
    }
}

/// The one way from credentials to a caller for these surfaces. A token is looked up first,
/// then its account compared with the path's, then checked (expiry, bearer): another tenant's
/// account reads as absent whatever state the token is in.
pub async fn resolve(
    state: &AppState,
    headers: &HeaderMap,
    passwords: bool,
    path_account: Option<&str>,
) -> Result<(Arc<Account>, Principal), Refusal> {
    match auth::parse_authorization(headers).map_err(Refusal::Malformed)? {
        None => Err(Refusal::Missing),
        Some(Credential::License(_)) => Err(Refusal::LicenseKey),
        Some(Credential::Token(raw)) => {
            let token = auth::find_token(&state.db, &raw).await.map_err(Refusal::unknown)?;
            let account = match path_account {
                Some(named) => state
                    .account(named)
                    .await
                    .map_err(Refusal::Failed)?
                    .filter(|a| a.id == token.account_id)
                    .ok_or(Refusal::OtherAccount)?,
                None => state
                    .account(&token.account_id.to_string())
                    .await
                    .map_err(Refusal::Failed)?
                    .ok_or_else(|| Refusal::Unknown(Error::unauthorized("Token is invalid", "TOKEN_INVALID")))?,
            };
            let principal = auth::token_principal(&state.db, &account, token).await.map_err(Refusal::invalid)?;
            Ok((account, principal))
        }
        Some(Credential::Password(email, password)) => {
            if !passwords {
                return Err(Refusal::Password);
            }
            // Email and password name no account: they log into the server's default one,
            // which a server holding several accounts has only when started with --account.
            let account = state.default_account().await.map_err(Refusal::Failed)?.ok_or(Refusal::NoDefaultAccount)?;
            if path_account.is_some_and(|named| named != account.id.to_string() && named != account.slug) {
                return Err(Refusal::OtherAccount);
            }
            // A name without `@` is a user name: the licensing surface's clients log in so.
            let login = auth::Login { db: &state.db, master: &state.master, otp: auth::Otp::Unavailable };
            let user = if email.contains('@') {
                auth::password_login(&login, &account, &email, &password).await
            } else {
                auth::name_login(&login, &account, &email, &password).await
            }
            .map_err(|e| match &e {
                // The password was right: the user must use a token here (see `auth::Otp`).
                Error::Unauthorized { code: Some(c), .. } if c == "OTP_REQUIRED" => Refusal::Invalid(e),
                _ => Refusal::unknown(e),
            })?;
            let principal = auth::user_principal(user).map_err(Refusal::invalid)?;
            Ok((account, principal))
        }
    }
}

impl<W: Wire> FromRequestParts<AppState> for Actor<W> {
    type Rejection = W::Rejection;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let path_account = match W::ACCOUNT_PARAM {
            Some(name) => {
                // A segment that is not UTF-8 names no account.
                let params = RawPathParams::from_request_parts(parts, state).await.ok();
                let named =
                    params.as_ref().and_then(|p| p.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string()));
                Some(named.ok_or_else(|| W::refuse(Refusal::OtherAccount, parts))?)
            }
            None => None,
        };
        let (account, principal) = resolve(state, &parts.headers, W::PASSWORDS, path_account.as_deref())
            .await
            .map_err(|r| W::refuse(r, parts))?;
        W::admit(&principal)?;
        Ok(Actor { state: state.clone(), account, principal, wire: PhantomData })
    }
}
