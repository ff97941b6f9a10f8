//! Which backend a database URL names, so that the backends' schemes are known in one place.

use std::path::Path;

/// A database URL, by scheme: `postgres://...` (or `postgresql://...`) names a PostgreSQL
/// database for [`crate::PostgresMeta`]; `sqlite://PATH` or `sqlite:PATH` a file for
/// [`crate::SqliteMeta`]. An empty URL, or one without a path, names the SQLite file in its
/// default place, which the caller knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatabaseUrl<'a> {
    /// The URL as given.
    Postgres(&'a str),
    /// The file, or `None` for the default place.
    Sqlite(Option<&'a Path>),
}

impl<'a> DatabaseUrl<'a> {
    /// The backend `url` names; `None` when it names none of them.
    pub fn parse(url: &'a str) -> Option<DatabaseUrl<'a>> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Some(DatabaseUrl::Postgres(url));
        }
        if url.is_empty() {
            return Some(DatabaseUrl::Sqlite(None));
        }
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))?;
        Some(DatabaseUrl::Sqlite(
            Some(Path::new(path)).filter(|p| !p.as_os_str().is_empty()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes() {
        let sqlite = |p: &'static str| Some(DatabaseUrl::Sqlite(Some(Path::new(p))));
        assert_eq!(DatabaseUrl::parse(""), Some(DatabaseUrl::Sqlite(None)));
        assert_eq!(
            DatabaseUrl::parse("sqlite:"),
            Some(DatabaseUrl::Sqlite(None))
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite://"),
            Some(DatabaseUrl::Sqlite(None))
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite:///var/lib/berth.db"),
            sqlite("/var/lib/berth.db")
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite:meta/berth.db"),
            sqlite("meta/berth.db")
        );
        for url in ["postgres://berth@db/berth", "postgresql://db/berth"] {
            assert_eq!(DatabaseUrl::parse(url), Some(DatabaseUrl::Postgres(url)));
        }
        for bad in ["mysql://db/berth", "postgres:db", "meta.db", " sqlite:x"] {
            assert_eq!(DatabaseUrl::parse(bad), None, "{bad}");
        }
    }
}
