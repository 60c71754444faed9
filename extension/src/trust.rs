//! Whether the extension's schema can be trusted before any superuser code (the worker, the
//! SECURITY DEFINER functions, the DROP guard) reads a table through it: it must still be named
//! `public` and be owned by a superuser. In PostgreSQL 15 `public` belongs to
//! `pg_database_owner`, i.e. the database's owner: a non-superuser owner could rename it, create
//! a new `public` with look-alike tables or views, and have the superuser code run them.

use pgrx::prelude::*;

/// The extension's schema, its effective owner (pg_database_owner resolved to the database's
/// owner) and whether that owner is a superuser. No row: the extension does not exist.
/// Every name is qualified: this runs before anything else is trusted.
const SCHEMA_OF_EXTENSION: &str = "
SELECT n.nspname::pg_catalog.text, r.rolname::pg_catalog.text, r.rolsuper,
       e.oid::pg_catalog.int8, e.extversion::pg_catalog.text
  FROM pg_catalog.pg_extension e
  JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) e.extnamespace
  JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) CASE
        WHEN n.nspowner OPERATOR(pg_catalog.=) 'pg_database_owner'::pg_catalog.regrole
        THEN (SELECT d.datdba FROM pg_catalog.pg_database d
               WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database())
        ELSE n.nspowner END
 WHERE e.extname OPERATOR(pg_catalog.=) 'ecommerce_ingest'";

/// What the check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schema {
    /// The extension is not installed in this database.
    Missing,
    /// Named `public` and owned by a superuser.
    Trusted,
    /// Why superuser code must not read the extension's tables now.
    Untrusted(String),
}

/// The extension as the catalog says: its oid, the version of its SQL objects, and whether its
/// schema can be trusted.
pub struct Extension {
    pub oid: i64,
    pub version: String,
    pub schema: Schema,
}

/// Checks the extension's schema (in the current transaction).
pub fn extension_schema() -> Result<Schema, pgrx::spi::Error> {
    Ok(extension()?.map_or(Schema::Missing, |e| e.schema))
}

/// The extension and its schema's check, in one catalog query (`None`: not installed).
pub fn extension() -> Result<Option<Extension>, pgrx::spi::Error> {
    Spi::connect(|c| {
        let rows = c.select(SCHEMA_OF_EXTENSION, None, &[])?;
        if rows.is_empty() {
            return Ok(None);
        }
        let r = rows.first();
        let oid = r.get::<i64>(4)?.unwrap_or_default();
        let version = r.get::<String>(5)?.unwrap_or_default();
        let name = r.get::<String>(1)?.unwrap_or_default();
        let owner = r.get::<String>(2)?.unwrap_or_default();
        let superuser = r.get::<bool>(3)?.unwrap_or(false);
        let schema = if name != "public" {
            Schema::Untrusted(format!(
                "the extension's schema was renamed from public to {name:?}: its superuser code refuses to read tables through a name another role may have taken; a superuser must rename it back (ALTER SCHEMA {name} RENAME TO public)"
            ))
        } else if !superuser {
            Schema::Untrusted(format!(
                "schema public, where the extension lives, is owned by {owner:?} (directly or as the database's owner through pg_database_owner), who is not a superuser and could rename it to make the extension's superuser code read look-alike tables; as a superuser: ALTER SCHEMA public OWNER TO postgres (then GRANT CREATE ON SCHEMA public TO {owner:?} if needed)"
            ))
        } else {
            Schema::Trusted
        };
        Ok(Some(Extension {
            oid,
            version,
            schema,
        }))
    })
}
