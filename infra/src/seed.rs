//! Demo data for `make dev`: one admin and one customer with known local passwords (printed at
//! start-up), and a small catalog. Seeding goes through the same code as the API, so seeded data is valid data.

use lumi_commerce::catalog;
use lumi_shared::{
    auth::{
        Role, Tier,
        users::{self, CreateUserError, NewUser},
    },
    store::Db,
};

use crate::stack::LocalStack;

/// A seeded account and its password.
pub struct SeededUser {
    pub role: Role,
    pub email: &'static str,
    pub password: &'static str,
}

pub const DEMO_USERS: &[SeededUser] = &[
    SeededUser {
        role: Role::Admin,
        email: "admin@lumi.local",
        password: "lumi-admin-local-1",
    },
    SeededUser {
        role: Role::Customer,
        email: "yuki@lumi.local",
        password: "yuki-yaki-local-1",
    },
];

/// The demo catalog: Yuki Yaki Corner's grill, prices in euro cents.
pub fn demo_catalog() -> Vec<catalog::NewProduct<'static>> {
    vec![
        catalog::NewProduct {
            id: "yaki-onigiri",
            name: "Yaki onigiri",
            description: "Grilled rice ball brushed with soy glaze.",
            variants: vec![
                ("ONI-SOY", "Soy glaze", 450, "EUR", 40),
                ("ONI-MISO", "Miso glaze", 480, "EUR", 25),
            ],
        },
        catalog::NewProduct {
            id: "yakitori-set",
            name: "Yakitori set",
            description: "Five skewers from the charcoal grill.",
            variants: vec![
                ("YAK-TARE", "Tare", 1290, "EUR", 15),
                ("YAK-SHIO", "Salt", 1290, "EUR", 10),
            ],
        },
        catalog::NewProduct {
            id: "matcha-dorayaki",
            name: "Matcha dorayaki",
            description: "Pancake sandwich with matcha cream.",
            variants: vec![("DORA-MATCHA", "Matcha", 390, "EUR", 30)],
        },
    ]
}

/// Creates the demo accounts and catalog (keeping any that exist already).
pub async fn seed(stack: &LocalStack) -> anyhow::Result<&'static [SeededUser]> {
    let db = Db::new(
        aws_sdk_dynamodb::Client::new(&stack.sdk_config),
        std::time::Duration::from_secs(5),
        std::time::Duration::from_secs(1),
    );
    let table = stack
        .names
        .refs
        .get("AppTable")
        .ok_or_else(|| anyhow::anyhow!("no AppTable"))?;
    for user in DEMO_USERS {
        let new = NewUser {
            email: user.email.into(),
            name: if user.role == Role::Admin {
                "Lumi Admin".into()
            } else {
                "Yuki Tanaka".into()
            },
            password: user.password.into(),
            role: user.role,
            tier: Tier::Standard,
        };
        match users::create(&db, table, new).await {
            Ok(_) | Err(CreateUserError::EmailTaken) => {}
            Err(error) => return Err(anyhow::anyhow!("seeding {}: {error}", user.email)),
        }
    }
    for product in demo_catalog() {
        match catalog::create(
            &db,
            table,
            &product,
            None,
            lumi_shared::clock::Clock::now_us(&lumi_shared::clock::SystemClock),
        )
        .await
        {
            Ok(()) | Err(lumi_shared::store::StoreError::ConditionFailed { .. }) => {}
            Err(error) => return Err(anyhow::anyhow!("seeding {}: {error}", product.id)),
        }
    }
    Ok(DEMO_USERS)
}
