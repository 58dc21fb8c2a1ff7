//! The order lifecycle: an enum with its allowed transitions written out, nothing implied.
//!
//! ```text
//! pending_payment ──► paid ──► fulfilling ──► shipped ──► delivered
//!   │    │             │  │        │  │          │            │
//!   │    ▼             │  ▼        │  ▼          ▼            ▼
//!   │  payment_failed  │ refunded ◄┴──┴──────── refunded ◄── refunded
//!   ▼    │             ▼
//! cancelled ◄──────────┘ (pending_payment, payment_failed, paid, fulfilling may be cancelled)
//! ```

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    PendingPayment,
    Paid,
    Fulfilling,
    Shipped,
    Delivered,
    Cancelled,
    PaymentFailed,
    Refunded,
}

impl OrderStatus {
    pub const ALL: [Self; 8] = [
        Self::PendingPayment,
        Self::Paid,
        Self::Fulfilling,
        Self::Shipped,
        Self::Delivered,
        Self::Cancelled,
        Self::PaymentFailed,
        Self::Refunded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::PendingPayment => "pending_payment",
            Self::Paid => "paid",
            Self::Fulfilling => "fulfilling",
            Self::Shipped => "shipped",
            Self::Delivered => "delivered",
            Self::Cancelled => "cancelled",
            Self::PaymentFailed => "payment_failed",
            Self::Refunded => "refunded",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// The states this one may move to.
    pub fn next(self) -> &'static [Self] {
        use OrderStatus::*;
        match self {
            PendingPayment => &[Paid, PaymentFailed, Cancelled],
            Paid => &[Fulfilling, Cancelled, Refunded],
            Fulfilling => &[Shipped, Cancelled, Refunded],
            Shipped => &[Delivered, Refunded],
            Delivered => &[Refunded],
            PaymentFailed => &[PendingPayment, Cancelled],
            Cancelled | Refunded => &[],
        }
    }

    pub fn can_become(self, to: Self) -> bool {
        self.next().contains(&to)
    }

    /// States a customer may cancel from (nothing has left the warehouse).
    pub fn customer_cancellable(self) -> bool {
        matches!(
            self,
            Self::PendingPayment | Self::PaymentFailed | Self::Paid
        )
    }

    /// Whether the stock of the order's lines is still taken (given back on cancel or failure).
    pub fn holds_stock(self) -> bool {
        !matches!(self, Self::Cancelled | Self::PaymentFailed | Self::Refunded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every ordered pair of states: allowed exactly when listed, never to itself, never out of
    /// a terminal state.
    #[test]
    fn every_pair_is_allowed_only_when_listed() {
        let allowed: &[(OrderStatus, OrderStatus)] = &[
            (OrderStatus::PendingPayment, OrderStatus::Paid),
            (OrderStatus::PendingPayment, OrderStatus::PaymentFailed),
            (OrderStatus::PendingPayment, OrderStatus::Cancelled),
            (OrderStatus::Paid, OrderStatus::Fulfilling),
            (OrderStatus::Paid, OrderStatus::Cancelled),
            (OrderStatus::Paid, OrderStatus::Refunded),
            (OrderStatus::Fulfilling, OrderStatus::Shipped),
            (OrderStatus::Fulfilling, OrderStatus::Cancelled),
            (OrderStatus::Fulfilling, OrderStatus::Refunded),
            (OrderStatus::Shipped, OrderStatus::Delivered),
            (OrderStatus::Shipped, OrderStatus::Refunded),
            (OrderStatus::Delivered, OrderStatus::Refunded),
            (OrderStatus::PaymentFailed, OrderStatus::PendingPayment),
            (OrderStatus::PaymentFailed, OrderStatus::Cancelled),
        ];
        let mut checked = 0;
        for from in OrderStatus::ALL {
            for to in OrderStatus::ALL {
                assert_eq!(
                    from.can_become(to),
                    allowed.contains(&(from, to)),
                    "{from:?} -> {to:?}"
                );
                checked += 1;
            }
            assert!(!from.can_become(from));
        }
        assert_eq!(checked, 64);
        assert!(
            OrderStatus::Cancelled.next().is_empty() && OrderStatus::Refunded.next().is_empty()
        );
    }

    #[test]
    fn names_round_trip() {
        for status in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(status.as_str()), Some(status));
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        }
    }
}
