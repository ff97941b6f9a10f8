//! Throw-away backends for tests, started on 127.0.0.1 and stopped when dropped: a PostgreSQL
//! cluster ([`postgres`]) and a moto S3 server ([`s3`]). Each honours the environment variables
//! that point the tests at servers of their own instead (see the README). And a round-robin
//! TCP balancer ([`balancer`]) to put in front of several replicas sharing them.

pub mod balancer;
pub mod postgres;
pub mod s3;
