//! The strategies that do not use tollgate's layer: the official SDKs' retry behind no pacing, a
//! static split or a polled bucket ([`sdk`]), the OpenAI cookbook's parallel processor
//! ([`cookbook`]), the AWS SDKs' adaptive retry mode ([`aws`]), and a single attempt.

mod aws;
mod cookbook;
mod herd;
mod sdk;

use super::{classifier, Answer, Call, StrategyKind};
use crate::rng::CallRng;
use crate::scenario::Scenario;
use tokio::time::Instant;
use tollgate::feedback::{Classify, HttpClassifier, Outcome};
use tollgate::BoxError;
use tollgate_mock::{MockProvider, MockRequest};
use tower::ServiceExt;

/// A client as a strategy that does not use the layer builds it for one run (see
/// [`layer`](super::layer) for those that do).
pub(crate) struct Client {
    provider: MockProvider,
    /// Reads the answers, on the run's wall clock.
    classifier: HttpClassifier,
    rule: Rule,
}

/// How a strategy paces and retries.
enum Rule {
    /// None, static split and bucket-80: pacing, then the SDK retry.
    Sdk(sdk::Pacing),
    /// One attempt, no pacing.
    Once,
    Cookbook(cookbook::Cookbook),
    Aws(aws::Aws),
}

impl Client {
    /// The client of `kind` for `scenario`, against `provider`, for a run that started at
    /// `start`.
    pub(crate) fn new(
        kind: StrategyKind,
        scenario: &Scenario,
        provider: MockProvider,
        start: Instant,
    ) -> Result<Client, BoxError> {
        let rule = match kind {
            StrategyKind::None => Rule::Sdk(sdk::Pacing::None),
            StrategyKind::NoRetry => Rule::Once,
            StrategyKind::StaticSplit => Rule::Sdk(sdk::Pacing::static_split(scenario, start)),
            StrategyKind::Bucket80 => Rule::Sdk(sdk::Pacing::bucket_80(scenario, start)),
            StrategyKind::Cookbook => Rule::Cookbook(cookbook::Cookbook::new(scenario, start)),
            StrategyKind::AwsAdaptive => Rule::Aws(aws::Aws::new(scenario, start)?),
            StrategyKind::Tollgate | StrategyKind::TollgateAdaptive => {
                return Err(
                    "tollgate's strategies send through the layer (`strategy::layer`)".into(),
                );
            }
        };
        Ok(Client {
            provider,
            classifier: classifier(start),
            rule,
        })
    }

    /// Sends one request until it succeeds or the strategy gives up; `true` on success.
    pub(crate) async fn send(&self, call: Call, rng: &mut CallRng) -> bool {
        match &self.rule {
            Rule::Sdk(pacing) => sdk::send(self, pacing, call, rng).await,
            Rule::Once => {
                let answer = self.answer(call.req).await;
                let ok = answer.status().is_success();
                self.provider.recycle(answer);
                ok
            }
            Rule::Cookbook(cookbook) => cookbook.send(self, call).await,
            Rule::Aws(aws) => aws.send(self, call, rng).await,
        }
    }

    /// Sends `req` once and classifies the answer (whose headers then go back to the provider for
    /// its next answer).
    async fn send_once(&self, req: MockRequest) -> Outcome {
        let answer = self.answer(req).await;
        let outcome = self
            .classifier
            .classify(Ok::<_, &BoxError>(&answer))
            .outcome;
        self.provider.recycle(answer);
        outcome
    }

    async fn answer(&self, req: MockRequest) -> Answer {
        match self.provider.clone().oneshot(req).await {
            Ok(a) => a,
            Err(never) => match never {},
        }
    }
}
