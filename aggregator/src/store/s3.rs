//! A model store in S3-compatible object storage (AWS S3, MinIO, Ceph RGW,
//! or moto in tests), addressed by a custom endpoint and static keys.

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_http_client::tls;
use bytes::Bytes;

use super::{ObjectStore, StoreError, StoreFuture, check_key};

/// Where the bucket is and how to sign requests.
#[derive(Clone)]
pub struct S3Settings {
    /// Endpoint URL (`https://s3.eu-west-1.amazonaws.com`, `http://127.0.0.1:9000`).
    pub endpoint: String,
    /// Region used for signing.
    pub region: String,
    /// Bucket (must exist).
    pub bucket: String,
    /// Key prefix inside the bucket, without leading or trailing '/' (may be empty).
    pub prefix: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Session token of temporary credentials.
    pub session_token: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`), which most
    /// S3-compatible servers need.
    pub path_style: bool,
}

impl std::fmt::Debug for S3Settings {
    // Credentials never reach logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("path_style", &self.path_style)
            .finish_non_exhaustive()
    }
}

/// Stores each key as an object `prefix/key` in one bucket.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    prefix: String,
}

impl S3Store {
    /// Builds a client for `settings` (no request is sent yet).
    pub fn new(settings: &S3Settings) -> Self {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let credentials = Credentials::new(
            settings.access_key_id.clone(),
            settings.secret_access_key.clone(),
            settings.session_token.clone(),
            None,
            "fedsky-aggregator",
        );
        let config = aws_sdk_s3::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(settings.endpoint.clone())
            .region(Region::new(settings.region.clone()))
            .credentials_provider(credentials)
            .force_path_style(settings.path_style)
            .http_client(http)
            // Whole-object PUTs with Content-MD5-free bodies: the flexible
            // checksum trailers are not understood by every S3-compatible server.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .build();
        Self {
            client: Client::from_conf(config),
            bucket: settings.bucket.clone(),
            prefix: settings.prefix.trim_matches('/').to_string(),
        }
    }

    /// Creates the bucket unless it exists (for development and tests; in
    /// production the bucket is provisioned with its policies beforehand).
    pub async fn ensure_bucket(&self) -> Result<(), StoreError> {
        if self
            .client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .is_ok()
        {
            return Ok(());
        }
        self.client
            .create_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(self.err("CreateBucket", ""))?;
        Ok(())
    }

    fn object_key(&self, key: &str) -> Result<String, StoreError> {
        check_key(key)?;
        Ok(if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        })
    }

    fn err<E>(&self, op: &'static str, key: &str) -> impl FnOnce(E) -> StoreError
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let bucket = self.bucket.clone();
        let key = key.to_string();
        move |e| StoreError::S3 {
            op,
            bucket,
            key,
            source: Box::new(e),
        }
    }
}

impl ObjectStore for S3Store {
    fn put<'a>(&'a self, key: &'a str, bytes: Bytes) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let object = self.object_key(key)?;
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(&object)
                .body(ByteStream::from(bytes))
                .send()
                .await
                .map_err(self.err("PutObject", &object))?;
            Ok(())
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Bytes>> {
        Box::pin(async move {
            let object = self.object_key(key)?;
            let out = match self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(&object)
                .send()
                .await
            {
                Ok(out) => out,
                Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                    return Ok(None);
                }
                Err(e) => return Err(self.err("GetObject", &object)(e)),
            };
            let body = out
                .body
                .collect()
                .await
                .map_err(self.err("GetObject body", &object))?;
            Ok(Some(body.into_bytes()))
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, Vec<String>> {
        Box::pin(async move {
            let full = match (self.prefix.is_empty(), prefix) {
                (true, p) => p.to_string(),
                (false, p) => format!("{}/{p}", self.prefix),
            };
            let strip = if self.prefix.is_empty() {
                0
            } else {
                self.prefix.len() + 1
            };
            let mut pages = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&full)
                .into_paginator()
                .send();
            let mut keys = Vec::new();
            while let Some(page) = pages.next().await {
                let page = page.map_err(self.err("ListObjectsV2", &full))?;
                for obj in page.contents() {
                    if let Some(k) = obj.key().and_then(|k| k.get(strip..)) {
                        keys.push(k.to_string());
                    }
                }
            }
            keys.sort();
            Ok(keys)
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let object = self.object_key(key)?;
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(&object)
                .send()
                .await
                .map_err(self.err("DeleteObject", &object))?;
            Ok(())
        })
    }

    fn describe(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }
}
