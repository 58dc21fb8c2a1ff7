//! Demo data for `make dev`: one admin and one customer with known local passwords (printed at
//! start-up). Seeding goes through the same code as the API, so seeded data is valid data.

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

/// Creates the demo accounts (keeping any that exist already).
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
    Ok(DEMO_USERS)
}
