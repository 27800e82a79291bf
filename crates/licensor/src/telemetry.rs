//! Request ids: the one value that ties a client's error report to the server's log line, set
//! by the HTTP layer and read by every surface's error rendering and by [`crate::error`].

tokio::task_local! {
    /// The current request's id: echoed in `X-Request-Id`, in error bodies of every surface,
    /// and in the log, so a user's report can be matched to a log line.
    pub static REQUEST_ID: String;
}

/// The id of the request being handled, if any.
pub fn request_id() -> Option<String> {
    REQUEST_ID.try_with(|id| id.clone()).ok()
}
