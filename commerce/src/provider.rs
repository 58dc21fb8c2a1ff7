//! The online payment provider behind a small trait: start a payment for an order, give money
//! back, forget a payment that will not be made. Stripe implements it over its HTTPS API
//! ([`crate::stripe`]); `manual` payments need no provider (money is taken and given back by
//! hand). The use cases only see [`PaymentProvider`], so their rules are tested without one.

use std::sync::Arc;

use lumi_shared::Platform;
use secrecy::ExposeSecret as _;
use tokio::sync::OnceCell;

use crate::stripe::{
    CreatePaymentIntent, CreateRefund, PaymentMethods, RefundStatus, StripeClient, StripeConfig,
    StripeError,
};

/// What a payment needs from its provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentStart {
    pub order_reference: String,
    pub payment_id: String,
    pub amount_minor: i64,
    pub currency: String,
    /// The same for every retry of one checkout: the provider makes one payment per key.
    pub idempotency_key: String,
}

/// The provider's payment: its id, and what the storefront needs to let the customer pay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderPayment {
    pub provider_ref: String,
    pub client_secret: Option<String>,
}

/// A refund to ask of the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundStart {
    pub provider_ref: String,
    pub refund_id: String,
    pub order_reference: String,
    pub amount_minor: i64,
    /// Derived from the refund record: a retry never makes a second refund.
    pub idempotency_key: String,
}

/// The provider's answer to a refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderRefund {
    Succeeded {
        provider_refund_id: String,
    },
    /// Accepted, not paid yet: an event will say.
    Pending {
        provider_refund_id: String,
    },
    Failed {
        provider_refund_id: String,
        reason: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// No answer (timeouts, 5xx, 429 after retries): the outcome is unknown; the same call with
    /// the same key may be made again later.
    #[error("the payment provider is unavailable: {0}")]
    Unavailable(String),
    /// The provider refused the request; repeating it changes nothing.
    #[error("the payment provider refused the request: {0}")]
    Refused(String),
    /// The provider is not configured (no secret key).
    #[error("the payment provider is not configured: {0}")]
    NotConfigured(String),
}

impl From<StripeError> for ProviderError {
    fn from(error: StripeError) -> Self {
        match error {
            StripeError::Unavailable { .. } => Self::Unavailable(error.to_string()),
            StripeError::Config(message) => Self::NotConfigured(message),
            StripeError::Card { .. }
            | StripeError::InvalidRequest { .. }
            | StripeError::InvalidArgument(_)
            | StripeError::Decode(_) => Self::Refused(error.to_string()),
        }
    }
}

/// An online payment provider.
pub trait PaymentProvider: Send + Sync {
    /// The name payments carry (`stripe`).
    fn name(&self) -> &'static str;

    /// Starts the payment of an order (a PaymentIntent).
    fn start(
        &self,
        payment: &PaymentStart,
    ) -> impl Future<Output = Result<ProviderPayment, ProviderError>> + Send;

    /// What the storefront needs to let the customer pay an existing payment.
    fn client_secret(
        &self,
        provider_ref: &str,
    ) -> impl Future<Output = Result<Option<String>, ProviderError>> + Send;

    /// Cancels a payment that no order will take (best effort).
    fn cancel(
        &self,
        provider_ref: &str,
        idempotency_key: &str,
    ) -> impl Future<Output = Result<(), ProviderError>> + Send;

    /// Gives money back.
    fn refund(
        &self,
        refund: &RefundStart,
    ) -> impl Future<Output = Result<ProviderRefund, ProviderError>> + Send;
}

/// Stripe: PaymentIntents, Refunds. The client is built on first use, with the secret key of
/// the config secret (`stripe_secret_key`); the API base, payment methods and publishable key
/// are configuration.
pub struct Stripe {
    platform: Arc<Platform>,
    client: OnceCell<StripeClient>,
}

impl Stripe {
    pub fn new(platform: Arc<Platform>) -> Self {
        Self {
            platform,
            client: OnceCell::new(),
        }
    }

    /// The publishable key the storefront's Stripe.js uses.
    pub fn publishable_key(&self) -> Option<&str> {
        self.platform.config.stripe.publishable_key.as_deref()
    }

    async fn client(&self) -> Result<&StripeClient, ProviderError> {
        self.client
            .get_or_try_init(|| async {
                let secrets = self
                    .platform
                    .secrets
                    .get()
                    .await
                    .map_err(|e| ProviderError::Unavailable(format!("the key store: {e}")))?;
                let key = secrets.stripe_secret_key.as_ref().ok_or_else(|| {
                    ProviderError::NotConfigured(
                        "stripe_secret_key is missing from the config secret".into(),
                    )
                })?;
                let config = StripeConfig::new(
                    self.platform.config.stripe.api_base.clone(),
                    key.expose_secret().to_owned(),
                );
                Ok(StripeClient::new(config)?)
            })
            .await
    }

    fn methods(&self) -> PaymentMethods {
        self.platform
            .config
            .stripe
            .payment_methods
            .parse()
            .unwrap_or_default()
    }
}

impl PaymentProvider for Stripe {
    fn name(&self) -> &'static str {
        "stripe"
    }

    async fn start(&self, payment: &PaymentStart) -> Result<ProviderPayment, ProviderError> {
        let request = CreatePaymentIntent::for_order(
            &payment.order_reference,
            &payment.payment_id,
            payment.amount_minor,
            &payment.currency,
            self.methods(),
        );
        let intent = self
            .client()
            .await?
            .create_payment_intent(&request, &payment.idempotency_key)
            .await?;
        Ok(ProviderPayment {
            provider_ref: intent.id,
            client_secret: intent.client_secret.map(|s| s.expose().to_owned()),
        })
    }

    async fn client_secret(&self, provider_ref: &str) -> Result<Option<String>, ProviderError> {
        let intent = self
            .client()
            .await?
            .retrieve_payment_intent(provider_ref)
            .await?;
        Ok(intent.client_secret.map(|s| s.expose().to_owned()))
    }

    async fn cancel(&self, provider_ref: &str, idempotency_key: &str) -> Result<(), ProviderError> {
        self.client()
            .await?
            .cancel_payment_intent(provider_ref, idempotency_key)
            .await?;
        Ok(())
    }

    async fn refund(&self, refund: &RefundStart) -> Result<ProviderRefund, ProviderError> {
        let request = CreateRefund::for_refund(
            &refund.provider_ref,
            refund.amount_minor,
            &refund.refund_id,
            &refund.order_reference,
        );
        let answer = self
            .client()
            .await?
            .create_refund(&request, &refund.idempotency_key)
            .await?;
        Ok(match answer.status {
            RefundStatus::Succeeded => ProviderRefund::Succeeded {
                provider_refund_id: answer.id,
            },
            RefundStatus::Failed | RefundStatus::Canceled => ProviderRefund::Failed {
                reason: answer
                    .failure_reason
                    .unwrap_or_else(|| format!("{:?}", answer.status).to_lowercase()),
                provider_refund_id: answer.id,
            },
            RefundStatus::Pending | RefundStatus::RequiresAction | RefundStatus::Unknown => {
                ProviderRefund::Pending {
                    provider_refund_id: answer.id,
                }
            }
        })
    }
}
