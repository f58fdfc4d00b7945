//! [`Provider`]: which API a call speaks, known from its path.

/// The provider API a call speaks.
///
/// ```
/// use tollgate_http::Provider;
///
/// assert_eq!(Provider::from_path("/v1/messages"), Some(Provider::Anthropic));
/// assert_eq!(Provider::from_path("/openai/v1/chat/completions"), Some(Provider::OpenAiChat));
/// assert_eq!(Provider::from_path("/v1/responses?x=1"), Some(Provider::OpenAiResponses));
/// assert_eq!(Provider::from_path("/v1/messages/count_tokens"), None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Provider {
    /// Anthropic Messages: `POST /v1/messages`.
    Anthropic,
    /// OpenAI Chat Completions: `POST /v1/chat/completions`.
    OpenAiChat,
    /// OpenAI Responses: `POST /v1/responses`.
    OpenAiResponses,
}

impl Provider {
    /// The provider whose endpoint `path` names, matched on the suffix so that a prefix before
    /// `/v1` (a proxy's route, `/anthropic/v1/messages`) is allowed. A query string and one
    /// trailing `/` are ignored; any other path is `None`.
    pub fn from_path(path: &str) -> Option<Provider> {
        let path = path.split_once('?').map_or(path, |(p, _)| p);
        let path = path.strip_suffix('/').unwrap_or(path);
        [
            ("/v1/messages", Provider::Anthropic),
            ("/v1/chat/completions", Provider::OpenAiChat),
            ("/v1/responses", Provider::OpenAiResponses),
        ]
        .into_iter()
        .find_map(|(suffix, provider)| path.ends_with(suffix).then_some(provider))
    }

    /// Whether this is one of OpenAI's APIs (their error bodies and token rules differ from
    /// Anthropic's).
    pub fn is_openai(self) -> bool {
        !matches!(self, Provider::Anthropic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(
            Provider::from_path("/v1/messages/"),
            Some(Provider::Anthropic)
        );
        assert_eq!(
            Provider::from_path("/anthropic/v1/messages"),
            Some(Provider::Anthropic)
        );
        assert_eq!(
            Provider::from_path("/v1/chat/completions"),
            Some(Provider::OpenAiChat)
        );
        assert_eq!(
            Provider::from_path("/x/v1/responses"),
            Some(Provider::OpenAiResponses)
        );
        // The suffix must start at a path segment.
        assert_eq!(Provider::from_path("/xv1/messages"), None);
        assert_eq!(Provider::from_path("/v2/messages"), None);
        assert_eq!(Provider::from_path("/v1/responses/resp_1"), None);
        assert_eq!(Provider::from_path(""), None);
    }
}
