//! A look at a database that changes nothing: for `berth serve --check-config`, which must not
//! migrate (or create) the database it checks.

use sqlx::migrate::Migrator;

use crate::{MetaError, Result};

/// What `PostgresMeta::probe` and `SqliteMeta::probe` found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    /// Migrations of this berth that the database lacks: `berth serve` applies them at start.
    pub pending_migrations: usize,
}

/// Compares the migrations `applied` to a database with those `migrator` knows.
pub(crate) fn compare(migrator: &Migrator, applied: &[i64]) -> Result<Probe> {
    let known: Vec<i64> = migrator
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .map(|m| m.version)
        .collect();
    if let Some(unknown) = applied.iter().find(|v| !known.contains(v)) {
        // The migrator refuses to start on such a database (sqlx `VersionMissing`).
        return Err(MetaError::Unavailable(format!(
            "the database has migration {unknown}, which this berth does not know: a newer \
             berth set it up"
        )));
    }
    Ok(Probe {
        pending_migrations: known.iter().filter(|v| !applied.contains(v)).count(),
    })
}

/// For opening a database without migrating it: refuses one that is behind this berth.
pub(crate) fn require_current(probe: Probe) -> Result<()> {
    if probe.pending_migrations > 0 {
        return Err(MetaError::Unavailable(format!(
            "the database lacks {} migration(s) of this berth; it is opened without changing \
             it, so start the berth version that uses it, or this one (`berth serve`, which \
             applies them), first",
            probe.pending_migrations
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    static MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");

    #[test]
    fn counts_pending_and_refuses_unknown_migrations() {
        let all: Vec<i64> = MIGRATOR.iter().map(|m| m.version).collect();
        assert_eq!(
            compare(&MIGRATOR, &[]).expect("fresh").pending_migrations,
            all.len()
        );
        assert_eq!(
            compare(&MIGRATOR, &all)
                .expect("current")
                .pending_migrations,
            0
        );
        assert_eq!(
            compare(&MIGRATOR, &all[..1])
                .expect("behind")
                .pending_migrations,
            all.len() - 1
        );
        let newer = [all.clone(), vec![9_999]].concat();
        assert!(matches!(
            compare(&MIGRATOR, &newer),
            Err(MetaError::Unavailable(m)) if m.contains("9999")
        ));
    }
}
