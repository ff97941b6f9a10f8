//! [`Accounts`]: users, projects, memberships, robots and the token signing key. Each write is
//! one statement or one transaction of inserts that unique and foreign keys guard, so
//! concurrent replicas (PostgreSQL) need nothing SQLite's one writer did not: a second
//! `create_user` of a name waits on the first insert's unique index entry and then fails with a
//! unique violation (`Conflict`), exactly as it would after it.

use async_trait::async_trait;
use sqlx::{ColumnIndex, Encode, Executor, Row, Type};

use super::{Conn, DbRow, Dialect, RowsAffected, SqlMeta, Value};
use crate::accounts::{Accounts, ProjectRecord, RobotPermission, RobotRecord, Role, UserRecord};
use crate::rows::{conflict, missing, role};
use crate::{MetaError, Result};

fn user<R: Row>(row: &R) -> Result<UserRecord>
where
    for<'r> &'r str: ColumnIndex<R>,
    for<'r> i64: Value<'r, R::Database>,
    for<'r> bool: Value<'r, R::Database>,
    for<'r> String: Value<'r, R::Database>,
{
    Ok(UserRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        password_hash: row.try_get("password_hash")?,
        system_admin: row.try_get("system_admin")?,
        disabled: row.try_get("disabled")?,
        created_at: row.try_get("created_at")?,
        token_stamp: row.try_get("token_stamp")?,
    })
}

fn project<R: Row>(row: &R) -> Result<ProjectRecord>
where
    for<'r> &'r str: ColumnIndex<R>,
    for<'r> i64: Value<'r, R::Database>,
    for<'r> bool: Value<'r, R::Database>,
    for<'r> String: Value<'r, R::Database>,
{
    Ok(ProjectRecord {
        name: row.try_get("name")?,
        public: row.try_get("public")?,
        owner: row.try_get("owner")?,
        created_at: row.try_get("created_at")?,
    })
}

impl<D: Dialect> SqlMeta<D>
where
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::DB>,
    for<'r> &'r str: ColumnIndex<DbRow<D>> + Value<'r, D::DB>,
    for<'r> i64: Value<'r, D::DB>,
    for<'r> bool: Value<'r, D::DB>,
    for<'r> String: Value<'r, D::DB>,
{
    async fn robot_record(&self, row: &DbRow<D>) -> Result<RobotRecord> {
        let name: String = row.try_get("name")?;
        let permissions = sqlx::query(
            "SELECT project, actions FROM robot_permissions WHERE robot = $1 ORDER BY project",
        )
        .bind(&name)
        .fetch_all(self.dialect.read())
        .await?
        .iter()
        .map(|p| {
            let actions: String = p.try_get("actions")?;
            Ok(RobotPermission {
                project: p.try_get("project")?,
                actions: actions
                    .split(',')
                    .filter(|a| !a.is_empty())
                    .map(str::to_string)
                    .collect(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
        Ok(RobotRecord {
            id: row.try_get("id")?,
            name,
            secret_hash: row.try_get("secret_hash")?,
            permissions,
            expires_at: row.try_get("expires_at")?,
            disabled: row.try_get("disabled")?,
            created_at: row.try_get("created_at")?,
            token_stamp: row.try_get("token_stamp")?,
        })
    }
}

#[async_trait]
impl<D: Dialect> Accounts for SqlMeta<D>
where
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::DB>,
    usize: ColumnIndex<DbRow<D>>,
    for<'r> &'r str: ColumnIndex<DbRow<D>> + Value<'r, D::DB>,
    for<'r> i64: Value<'r, D::DB>,
    for<'r> bool: Value<'r, D::DB>,
    for<'r> String: Value<'r, D::DB>,
    for<'r> Vec<u8>: Value<'r, D::DB>,
    for<'r> &'r [u8]: Encode<'r, D::DB> + Type<D::DB>,
    for<'r> Option<i64>: Encode<'r, D::DB>,
    for<'r> Option<String>: Encode<'r, D::DB>,
    for<'r> Option<&'r str>: Encode<'r, D::DB>,
{
    async fn create_user(&self, u: &UserRecord, personal: Option<&ProjectRecord>) -> Result<()> {
        let mut tx = self.dialect.begin_write().await?;
        sqlx::query(
            "INSERT INTO users (id, name, password_hash, system_admin, disabled, created_at,
                                token_stamp)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&u.id)
        .bind(&u.name)
        .bind(&u.password_hash)
        .bind(u.system_admin)
        .bind(u.disabled)
        .bind(u.created_at)
        .bind(u.token_stamp)
        .execute(&mut *tx)
        .await
        .map_err(conflict("user", &u.name))?;
        if let Some(p) = personal {
            Self::insert_project(&mut tx, p).await?;
            Self::insert_member(&mut tx, &p.name, &u.name, Role::Admin, self.now()).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn user(&self, name: &str) -> Result<Option<UserRecord>> {
        sqlx::query("SELECT * FROM users WHERE name = $1")
            .bind(name)
            .fetch_optional(self.dialect.read())
            .await?
            .as_ref()
            .map(user)
            .transpose()
    }

    async fn users(&self) -> Result<Vec<UserRecord>> {
        sqlx::query("SELECT * FROM users ORDER BY name")
            .fetch_all(self.dialect.read())
            .await?
            .iter()
            .map(user)
            .collect()
    }

    async fn count_users(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(self.dialect.read())
            .await?;
        Ok(n as u64)
    }

    async fn set_password(&self, name: &str, password_hash: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE users SET password_hash = $1, token_stamp = token_stamp + 1 WHERE name = $2",
        )
        .bind(password_hash)
        .bind(name)
        .execute(self.dialect.write())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn set_user_disabled(&self, name: &str, disabled: bool) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE users SET disabled = $1, token_stamp = token_stamp + 1 WHERE name = $2",
        )
        .bind(disabled)
        .bind(name)
        .execute(self.dialect.write())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_user(&self, name: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM users WHERE name = $1")
            .bind(name)
            .execute(self.dialect.write())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn create_project(&self, p: &ProjectRecord, admin: Option<&str>) -> Result<()> {
        let mut tx = self.dialect.begin_write().await?;
        Self::insert_project(&mut tx, p).await?;
        if let Some(admin) = admin {
            Self::insert_member(&mut tx, &p.name, admin, Role::Admin, self.now()).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn project(&self, name: &str) -> Result<Option<ProjectRecord>> {
        sqlx::query("SELECT * FROM projects WHERE name = $1")
            .bind(name)
            .fetch_optional(self.dialect.read())
            .await?
            .as_ref()
            .map(project)
            .transpose()
    }

    async fn projects(&self) -> Result<Vec<ProjectRecord>> {
        sqlx::query("SELECT * FROM projects ORDER BY name")
            .fetch_all(self.dialect.read())
            .await?
            .iter()
            .map(project)
            .collect()
    }

    async fn set_project_public(&self, name: &str, public: bool) -> Result<bool> {
        let done = sqlx::query("UPDATE projects SET public = $1 WHERE name = $2")
            .bind(public)
            .bind(name)
            .execute(self.dialect.write())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_project(&self, name: &str) -> Result<bool> {
        let mut tx = self.dialect.begin_write().await?;
        // Tokens of its members and robots may name its repositories: they stop, so that a
        // project created again under this name is not open to them.
        sqlx::query(
            "UPDATE users SET token_stamp = token_stamp + 1 WHERE name IN (SELECT username FROM memberships WHERE project = $1)",
        )
        .bind(name)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE robots SET token_stamp = token_stamp + 1 WHERE name IN (SELECT robot FROM robot_permissions WHERE project = $1)",
        )
        .bind(name)
        .execute(&mut *tx)
        .await?;
        let done = sqlx::query("DELETE FROM projects WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    async fn set_member(&self, project: &str, user: &str, role: Role) -> Result<()> {
        let mut tx = self.dialect.begin_write().await?;
        let before: Option<String> =
            sqlx::query_scalar("SELECT role FROM memberships WHERE project = $1 AND username = $2")
                .bind(project)
                .bind(user)
                .fetch_optional(&mut *tx)
                .await?;
        if before
            .as_deref()
            .map(crate::rows::role)
            .transpose()?
            .is_some_and(|b| b > role)
        {
            Self::bump_user_stamp(&mut tx, user).await?;
        }
        sqlx::query(
            "INSERT INTO memberships (project, username, role, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (project, username) DO UPDATE SET role = excluded.role",
        )
        .bind(project)
        .bind(user)
        .bind(role.as_str())
        .bind(self.now())
        .execute(&mut *tx)
        .await
        .map_err(missing(format!("project {project:?} or user {user:?}")))?;
        tx.commit().await?;
        Ok(())
    }

    async fn remove_member(&self, project: &str, user: &str) -> Result<bool> {
        let mut tx = self.dialect.begin_write().await?;
        let done = sqlx::query("DELETE FROM memberships WHERE project = $1 AND username = $2")
            .bind(project)
            .bind(user)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() > 0 {
            Self::bump_user_stamp(&mut tx, user).await?;
        }
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    async fn members(&self, project: &str) -> Result<Vec<(String, Role)>> {
        sqlx::query("SELECT username, role FROM memberships WHERE project = $1 ORDER BY username")
            .bind(project)
            .fetch_all(self.dialect.read())
            .await?
            .iter()
            .map(|r| Ok((r.try_get("username")?, role(r.try_get("role")?)?)))
            .collect()
    }

    async fn role(&self, project: &str, user: &str) -> Result<Option<Role>> {
        let text: Option<String> =
            sqlx::query_scalar("SELECT role FROM memberships WHERE project = $1 AND username = $2")
                .bind(project)
                .bind(user)
                .fetch_optional(self.dialect.read())
                .await?;
        text.as_deref().map(role).transpose()
    }

    async fn create_robot(&self, r: &RobotRecord) -> Result<()> {
        let mut tx = self.dialect.begin_write().await?;
        sqlx::query(
            "INSERT INTO robots (id, name, secret_hash, expires_at, disabled, created_at,
                                 token_stamp)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&r.id)
        .bind(&r.name)
        .bind(&r.secret_hash)
        .bind(r.expires_at)
        .bind(r.disabled)
        .bind(r.created_at)
        .bind(r.token_stamp)
        .execute(&mut *tx)
        .await
        .map_err(conflict("robot account", &r.name))?;
        for p in &r.permissions {
            sqlx::query(
                "INSERT INTO robot_permissions (robot, project, actions) VALUES ($1, $2, $3)",
            )
            .bind(&r.name)
            .bind(&p.project)
            .bind(p.actions.join(","))
            .execute(&mut *tx)
            .await
            .map_err(missing(format!("project {:?}", p.project)))?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn robot(&self, name: &str) -> Result<Option<RobotRecord>> {
        let row = sqlx::query("SELECT * FROM robots WHERE name = $1")
            .bind(name)
            .fetch_optional(self.dialect.read())
            .await?;
        match row {
            Some(r) => Ok(Some(self.robot_record(&r).await?)),
            None => Ok(None),
        }
    }

    async fn robots(&self) -> Result<Vec<RobotRecord>> {
        let rows = sqlx::query("SELECT * FROM robots ORDER BY name")
            .fetch_all(self.dialect.read())
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push(self.robot_record(r).await?);
        }
        Ok(out)
    }

    async fn set_robot_disabled(&self, name: &str, disabled: bool) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE robots SET disabled = $1, token_stamp = token_stamp + 1 WHERE name = $2",
        )
        .bind(disabled)
        .bind(name)
        .execute(self.dialect.write())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_robot(&self, name: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM robots WHERE name = $1")
            .bind(name)
            .execute(self.dialect.write())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Two statements outside a transaction, deliberately. Replicas starting at once
    /// (PostgreSQL): the later inserts wait for the first and do nothing, and the SELECT, with a
    /// snapshot taken after that, reads the winner's key. In one statement (a CTE) or one
    /// REPEATABLE READ transaction the SELECT would share a snapshot taken before the winner
    /// committed and find no row at all.
    async fn signing_key(&self, candidate: &[u8]) -> Result<Vec<u8>> {
        sqlx::query(
            "INSERT INTO signing_keys (id, pkcs8, created_at) VALUES (1, $1, $2)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(candidate)
        .bind(self.now())
        .execute(self.dialect.write())
        .await?;
        let key: Vec<u8> = sqlx::query_scalar("SELECT pkcs8 FROM signing_keys WHERE id = 1")
            .fetch_one(self.dialect.write())
            .await?;
        Ok(key)
    }
}

impl<D: Dialect> SqlMeta<D>
where
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::DB>,
    for<'r> &'r str: Value<'r, D::DB>,
    for<'r> i64: Value<'r, D::DB>,
    for<'r> bool: Value<'r, D::DB>,
    for<'r> String: Value<'r, D::DB>,
    for<'r> Option<String>: Encode<'r, D::DB>,
{
    async fn insert_project(tx: &mut Conn<D>, p: &ProjectRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO projects (name, public, owner, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&p.name)
        .bind(p.public)
        .bind(&p.owner)
        .bind(p.created_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
                MetaError::NotFound(format!("owner {:?}", p.owner))
            }
            _ => conflict("project", &p.name)(e),
        })?;
        Ok(())
    }

    async fn insert_member(
        tx: &mut Conn<D>,
        project: &str,
        user: &str,
        role: Role,
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO memberships (project, username, role, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(project)
        .bind(user)
        .bind(role.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(missing(format!("project {project:?} or user {user:?}")))?;
        Ok(())
    }

    /// Stops every token of `user` (see [`Accounts`]).
    async fn bump_user_stamp(tx: &mut Conn<D>, user: &str) -> Result<()> {
        sqlx::query("UPDATE users SET token_stamp = token_stamp + 1 WHERE name = $1")
            .bind(user)
            .execute(&mut *tx)
            .await?;
        Ok(())
    }
}
