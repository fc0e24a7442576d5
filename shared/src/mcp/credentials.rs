//! MCP servers' header values (credentials): write-only through the admin
//! API, kept outside the table.

use std::collections::BTreeMap;

use async_trait::async_trait;

/// A failure to read or write header values (never contains a value).
#[derive(Debug, thiserror::Error)]
#[error("credentials store failed: {0}")]
pub struct CredentialsError(pub String);

/// Where servers' header values are kept.
#[async_trait]
pub trait Credentials: Send + Sync {
    /// Stores (replaces) the values of `tenant`'s server `server`.
    async fn put(
        &self,
        tenant: &str,
        server: &str,
        values: &BTreeMap<String, String>,
    ) -> Result<(), CredentialsError>;
    /// The values of `tenant`'s server `server` (empty when none are kept).
    async fn get(
        &self,
        tenant: &str,
        server: &str,
    ) -> Result<BTreeMap<String, String>, CredentialsError>;
    /// Forgets them.
    async fn delete(&self, tenant: &str, server: &str) -> Result<(), CredentialsError>;
}

/// Values kept in memory (tests, and processes with no place to keep them).
#[derive(Default)]
pub struct MemoryCredentials {
    values: std::sync::Mutex<BTreeMap<(String, String), BTreeMap<String, String>>>,
}

#[async_trait]
impl Credentials for MemoryCredentials {
    async fn put(
        &self,
        tenant: &str,
        server: &str,
        values: &BTreeMap<String, String>,
    ) -> Result<(), CredentialsError> {
        let mut m = self.values.lock().unwrap_or_else(|e| e.into_inner());
        m.insert((tenant.to_owned(), server.to_owned()), values.clone());
        Ok(())
    }

    async fn get(
        &self,
        tenant: &str,
        server: &str,
    ) -> Result<BTreeMap<String, String>, CredentialsError> {
        let m = self.values.lock().unwrap_or_else(|e| e.into_inner());
        Ok(m.get(&(tenant.to_owned(), server.to_owned()))
            .cloned()
            .unwrap_or_default())
    }

    async fn delete(&self, tenant: &str, server: &str) -> Result<(), CredentialsError> {
        let mut m = self.values.lock().unwrap_or_else(|e| e.into_inner());
        m.remove(&(tenant.to_owned(), server.to_owned()));
        Ok(())
    }
}

/// How long a value read from Secrets Manager is reused by this process
/// (its own writes update it at once; another process's within this time).
pub const SECRETS_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(30);

type Values = BTreeMap<String, String>;

/// Values in AWS Secrets Manager, one secret per server:
/// `{prefix}/{tenant}/{server}`, a JSON object of header name -> value.
pub struct SecretsManagerCredentials {
    client: aws_sdk_secretsmanager::Client,
    prefix: String,
    ttl: std::time::Duration,
    cache: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, Values)>>,
}

/// A Secrets Manager failure, bounded: the service's error code, or the kind
/// of failure (never the request, which may hold values).
fn sm_failure<E: aws_sdk_secretsmanager::error::ProvideErrorMetadata, R>(
    what: &str,
    e: &aws_sdk_secretsmanager::error::SdkError<E, R>,
) -> CredentialsError {
    use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
    let kind = match e.code().filter(|c| crate::ids::is_token(c)) {
        Some(code) => format!("service error {code}"),
        None => match e {
            SdkError::TimeoutError(_) => "timed out".into(),
            SdkError::DispatchFailure(_) => "could not reach the service".into(),
            SdkError::ResponseError(_) => "unreadable response".into(),
            SdkError::ServiceError(_) => "service error".into(),
            _ => "request not sent".into(),
        },
    };
    CredentialsError(format!("Secrets Manager {what}: {kind}"))
}

/// A tenant id in a secret name: Secrets Manager names allow
/// `A-Za-z0-9/_+=.@-`; tenant ids may also hold `:`, written `=3A` (`=`
/// never appears in a tenant id, so the encoding cannot collide).
pub fn encode_name_part(part: &str) -> String {
    let mut out = String::with_capacity(part.len());
    for c in part.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("={b:02X}"));
            }
        }
    }
    out
}

impl SecretsManagerCredentials {
    /// Secrets named under `prefix` (the `[mcp] secret_prefix`).
    pub fn new(client: aws_sdk_secretsmanager::Client, prefix: impl Into<String>) -> Self {
        Self {
            client,
            prefix: prefix.into().trim_end_matches('/').to_owned(),
            ttl: SECRETS_CACHE_TTL,
            cache: Default::default(),
        }
    }

    /// The secret holding `tenant`'s server `server`.
    pub fn secret_name(&self, tenant: &str, server: &str) -> String {
        format!(
            "{}/{}/{}",
            self.prefix,
            encode_name_part(tenant),
            encode_name_part(server)
        )
    }

    fn remember(&self, name: String, values: Values) {
        let mut c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        // A bound on memory: the cache only saves reads, so dropping it is safe.
        if c.len() >= 10_000 {
            c.clear();
        }
        c.insert(name, (std::time::Instant::now(), values));
    }
}

#[async_trait]
impl Credentials for SecretsManagerCredentials {
    async fn put(
        &self,
        tenant: &str,
        server: &str,
        values: &BTreeMap<String, String>,
    ) -> Result<(), CredentialsError> {
        let name = self.secret_name(tenant, server);
        let text = serde_json::to_string(values)
            .map_err(|_| CredentialsError("cannot encode the values".into()))?;
        let created = self
            .client
            .create_secret()
            .name(&name)
            .secret_string(&text)
            .send()
            .await;
        match created {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_exists_exception()) =>
            {
                self.client
                    .put_secret_value()
                    .secret_id(&name)
                    .secret_string(&text)
                    .send()
                    .await
                    .map_err(|e| sm_failure("PutSecretValue", &e))?;
            }
            Err(e) => return Err(sm_failure("CreateSecret", &e)),
        }
        self.remember(name, values.clone());
        Ok(())
    }

    async fn get(
        &self,
        tenant: &str,
        server: &str,
    ) -> Result<BTreeMap<String, String>, CredentialsError> {
        let name = self.secret_name(tenant, server);
        {
            let c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((at, v)) = c.get(&name)
                && at.elapsed() < self.ttl
            {
                return Ok(v.clone());
            }
        }
        let values = match self.client.get_secret_value().secret_id(&name).send().await {
            Ok(out) => match out.secret_string() {
                Some(text) => serde_json::from_str::<Values>(text).map_err(|_| {
                    CredentialsError(format!("the secret {name} is not a JSON object of strings"))
                })?,
                None => Values::new(),
            },
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                Values::new()
            }
            Err(e) => return Err(sm_failure("GetSecretValue", &e)),
        };
        self.remember(name, values.clone());
        Ok(values)
    }

    async fn delete(&self, tenant: &str, server: &str) -> Result<(), CredentialsError> {
        let name = self.secret_name(tenant, server);
        let res = self
            .client
            .delete_secret()
            .secret_id(&name)
            .force_delete_without_recovery(true)
            .send()
            .await;
        match res {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) => {}
            Err(e) => return Err(sm_failure("DeleteSecret", &e)),
        }
        self.remember(name, Values::new());
        Ok(())
    }
}

/// The file [`FileCredentials`] keeps in the data directory.
pub const CREDENTIALS_FILE: &str = "mcp-credentials.json";

/// Values in `mcp-credentials.json` of the embedded store's data directory:
/// `{tenant: {server: {header: value}}}`, readable by its owner only (0600),
/// replaced atomically (a temporary file renamed over it) on every write.
pub struct FileCredentials {
    path: std::path::PathBuf,
    /// One writer at a time in this process (read, change, rename).
    lock: std::sync::Arc<std::sync::Mutex<()>>,
}

type FileDoc = BTreeMap<String, BTreeMap<String, Values>>;

impl FileCredentials {
    /// The file in `dir` (created on the first write); an existing file's
    /// mode is narrowed to 0600.
    pub fn open(dir: &std::path::Path) -> Result<Self, CredentialsError> {
        let path = dir.join(CREDENTIALS_FILE);
        if path.exists() {
            set_owner_only(&path)?;
        }
        Ok(Self {
            path,
            lock: Default::default(),
        })
    }

    /// Where the values are kept.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    fn read(path: &std::path::Path) -> Result<FileDoc, CredentialsError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|_| {
                CredentialsError(format!("{} is not valid credentials JSON", path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(FileDoc::new()),
            Err(e) => Err(CredentialsError(format!(
                "cannot read {}: {}",
                path.display(),
                e.kind()
            ))),
        }
    }

    /// Reads the file, applies `change`, writes it back atomically.
    async fn update(
        &self,
        change: impl FnOnce(&mut FileDoc) + Send + 'static,
    ) -> Result<(), CredentialsError> {
        let (path, lock) = (self.path.clone(), self.lock.clone());
        tokio::task::spawn_blocking(move || {
            let _g = lock.lock().unwrap_or_else(|e| e.into_inner());
            let mut doc = Self::read(&path)?;
            change(&mut doc);
            write_owner_only(&path, &doc)
        })
        .await
        .map_err(|_| CredentialsError("the credentials writer stopped".into()))?
    }
}

#[cfg(unix)]
fn set_owner_only(path: &std::path::Path) -> Result<(), CredentialsError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| CredentialsError(format!("cannot restrict {}: {}", path.display(), e.kind())))
}

#[cfg(not(unix))]
fn set_owner_only(_: &std::path::Path) -> Result<(), CredentialsError> {
    Ok(())
}

/// Writes `doc` to a temporary file created 0600 next to `path`, flushes
/// it, and renames it over `path`: readers see the old file or the new one.
fn write_owner_only(path: &std::path::Path, doc: &FileDoc) -> Result<(), CredentialsError> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    let io = |what: &str, e: std::io::Error| {
        CredentialsError(format!("cannot {what} in {}: {}", dir.display(), e.kind()))
    };
    std::fs::create_dir_all(dir).map_err(|e| io("create the directory", e))?;
    let bytes = serde_json::to_vec_pretty(doc)
        .map_err(|_| CredentialsError("cannot encode the values".into()))?;
    let tmp = dir.join(format!(
        ".{CREDENTIALS_FILE}.{}.{}",
        std::process::id(),
        hex::encode(crate::ids::random_bytes::<6>())
    ));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let written = (|| {
        let mut f = opts.open(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io("write the credentials file", e));
    }
    Ok(())
}

#[async_trait]
impl Credentials for FileCredentials {
    async fn put(
        &self,
        tenant: &str,
        server: &str,
        values: &BTreeMap<String, String>,
    ) -> Result<(), CredentialsError> {
        let (tenant, server, values) = (tenant.to_owned(), server.to_owned(), values.clone());
        self.update(move |doc| {
            doc.entry(tenant).or_default().insert(server, values);
        })
        .await
    }

    async fn get(
        &self,
        tenant: &str,
        server: &str,
    ) -> Result<BTreeMap<String, String>, CredentialsError> {
        let path = self.path.clone();
        let doc = tokio::task::spawn_blocking(move || Self::read(&path))
            .await
            .map_err(|_| CredentialsError("the credentials reader stopped".into()))??;
        Ok(doc
            .get(tenant)
            .and_then(|t| t.get(server))
            .cloned()
            .unwrap_or_default())
    }

    async fn delete(&self, tenant: &str, server: &str) -> Result<(), CredentialsError> {
        let (tenant, server) = (tenant.to_owned(), server.to_owned());
        self.update(move |doc| {
            if let Some(t) = doc.get_mut(&tenant) {
                t.remove(&server);
                if t.is_empty() {
                    doc.remove(&tenant);
                }
            }
        })
        .await
    }
}
