"""The KnowledgeBase custom resource's spec: shared by the operator (validation, CRD, rendering) and the
knowledge server that ingests and serves the base. Imports nothing heavier than pydantic (the operator's
image carries no numpy or embedding model)."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from ..config import Model, Placement, ResourceRequirements, SecretKeyRef

NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
DEFAULT_EMBEDDING_MODEL = "l2_supercat_256"


class ChunkingSpec(Model):
    """How a source's documents are cut into the pieces that are embedded and retrieved."""

    strategy: Literal["paragraph", "sentence", "markdown", "fixed"] = Field(
        default="paragraph",
        description="paragraph: blank-line blocks packed up to maxChars; sentence: sentences packed up to "
        "maxChars; markdown: one piece per heading section (split further past maxChars), each carrying its "
        "heading path; fixed: windows of maxChars.",
    )
    max_chars: int = Field(default=1000, ge=100, le=20000, description="Upper bound of a chunk's length.")
    overlap_chars: int = Field(
        default=100, ge=0, le=5000, description="Characters repeated from the end of the previous chunk."
    )


class ConfigMapSource(Model):
    """Documents from a ConfigMap in the KnowledgeBase's namespace: one document per key."""

    name: str = Field(pattern=NAME_PATTERN, max_length=253, description="Name of the ConfigMap.")
    keys: list[str] = Field(
        default_factory=list, max_length=256, description="Keys to read; empty: every key."
    )


class FilesSource(Model):
    """Documents from files on a volume mounted into the knowledge server."""

    claim_name: str | None = Field(
        default=None,
        pattern=NAME_PATTERN,
        description="PersistentVolumeClaim holding the files (mounted read-only); unset: the path is on "
        "the knowledge server's own store volume.",
    )
    path: str = Field(default="/", max_length=1024, description="Directory inside the volume.")
    glob: str = Field(
        default="**/*",
        max_length=256,
        description="Which files under path are documents (fnmatch, ** recursive).",
    )


class HTTPSource(Model):
    """One document fetched from an HTTP(S) URL, conditionally (ETag / Last-Modified)."""

    url: str = Field(max_length=2048, pattern=r"^https?://.+", description="The document's URL.")
    headers_secret_ref: SecretKeyRef | None = Field(
        default=None, description="Secret key with a JSON object of request headers (e.g. Authorization)."
    )
    timeout_seconds: float = Field(default=30.0, ge=1, le=600, description="Per request.")


class S3Source(Model):
    """Documents from objects of an S3-compatible bucket under a prefix."""

    endpoint: str = Field(max_length=2048, pattern=r"^https?://.+", description="S3 endpoint URL.")
    bucket: str = Field(min_length=3, max_length=63, description="Bucket name.")
    prefix: str = Field(default="", max_length=1024, description="Only objects under this prefix.")
    region: str = Field(default="", max_length=64, description="Bucket region, where the server needs one.")
    credentials_secret_ref: str | None = Field(
        default=None,
        pattern=NAME_PATTERN,
        description="Secret with keys accessKeyId and secretAccessKey; unset: anonymous access.",
    )


class SourceSpec(Model):
    """Where documents come from, how they are cut, and how fresh they must be."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "[has(self.configMap), has(self.files), has(self.http), has(self.s3)]"
                    ".filter(x, x).size() == 1",
                    "message": "a source needs exactly one of configMap, files, http or s3",
                }
            ]
        }
    )
    name: str = Field(
        pattern=NAME_PATTERN, max_length=63, description="Name of the source, unique in the base."
    )
    config_map: ConfigMapSource | None = Field(default=None, description="Documents from a ConfigMap.")
    files: FilesSource | None = Field(default=None, description="Documents from files on a volume.")
    http: HTTPSource | None = Field(default=None, description="A document from an HTTP(S) URL.")
    s3: S3Source | None = Field(default=None, description="Documents from an S3-compatible bucket.")
    partition: str = Field(
        default="",
        max_length=63,
        pattern=r"^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)?$",
        description="Tenant or region these documents belong to; calls search only their own partition "
        "and the shared one (empty).",
    )
    chunking: ChunkingSpec = Field(default_factory=ChunkingSpec, description="How documents are chunked.")
    refresh_seconds: int = Field(
        default=300, ge=10, le=7 * 86400, description="How often the source is synced."
    )
    max_age_seconds: int | None = Field(
        default=None,
        ge=60,
        le=365 * 86400,
        description="Freshness policy: a source not synced successfully for this long is Stale (condition, "
        "metric, alert).",
    )
    on_stale: Literal["withhold", "serve"] = Field(
        default="withhold",
        description="withhold: a stale source's documents expire and are never served (the agent says it "
        "does not know rather than read an outdated price list); serve: keep serving them, flagged stale.",
    )
    max_document_bytes: int = Field(
        default=10 * 1024 * 1024,
        ge=1024,
        le=1024 * 1024 * 1024,
        description="Larger documents are refused (an error on the source; nothing indexed is lost).",
    )


class EmbeddingSpec(Model):
    """The model that turns chunks and queries into vectors. Changing it re-embeds the whole base."""

    provider: Literal["wordllama", "openai"] = Field(
        default="wordllama",
        description="wordllama: offline, its weights ship in the PyPI package; openai: any "
        "OpenAI-compatible /v1/embeddings endpoint.",
    )
    model: str = Field(default=DEFAULT_EMBEDDING_MODEL, max_length=200, description="Model name.")
    dimensions: int | None = Field(
        default=None, ge=8, le=8192, description="Vector size, where the model can truncate."
    )
    base_url: str = Field(
        default="", max_length=2048, pattern=r"^(https?://.+)?$", description="OpenAI-compatible base URL."
    )
    credentials_secret_ref: SecretKeyRef | None = Field(default=None, description="API key of the endpoint.")
    batch_size: int = Field(default=64, ge=1, le=2048, description="Chunks per embedding request.")


class SqliteStoreSpec(Model):
    """The embedded store: one SQLite file on the knowledge server's volume."""

    size: str = Field(default="1Gi", max_length=32, description="Size of the PersistentVolumeClaim.")
    storage_class_name: str | None = Field(
        default=None, max_length=253, description="StorageClass of the claim; unset: the cluster default."
    )
    ephemeral: bool = Field(
        default=False, description="Keep the store in an emptyDir (re-ingested after a pod restart)."
    )


class PgvectorStoreSpec(Model):
    """PostgreSQL with pgvector, for bases that outgrow one file or need several serving replicas."""

    dsn_secret_ref: SecretKeyRef = Field(description="Secret key holding the libpq connection string.")
    table_prefix: str = Field(
        default="kb", pattern=r"^[a-z][a-z0-9_]{0,30}$", description="Prefix of this base's tables."
    )
    keyword_index: Literal["auto", "gin"] = Field(
        default="auto",
        description="auto: a RUM index when the database has or may create the rum extension (top-k keyword "
        "ranking read from the index), else GIN; gin: GIN always (RUM's inserts cost about twice GIN's).",
    )


class StoreSpec(Model):
    """Where the index lives."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.type != 'pgvector' || has(self.pgvector)",
                    "message": "store.pgvector is required when store.type is pgvector",
                }
            ]
        }
    )
    type: Literal["sqlite", "pgvector"] = Field(default="sqlite", description="The store.")
    sqlite: SqliteStoreSpec = Field(default_factory=SqliteStoreSpec, description="The embedded store.")
    pgvector: PgvectorStoreSpec | None = Field(default=None, description="PostgreSQL + pgvector.")


class SearchSpec(Model):
    """How a query finds chunks."""

    mode: Literal["hybrid", "vector", "keyword"] = Field(
        default="hybrid", description="hybrid: keyword (BM25) and vector results fused by reciprocal rank."
    )
    # 10, not the customary 60: a smaller constant lets each ranking's top decide. Among 10k distractor
    # chunks holding the questions' own words, hybrid recall@5 of the fixture corpus is 0.93 at 10 and 0.88
    # at 60, on both halves of its questions (bench.knowledge), and no lower on the corpus alone.
    rrf_k: int = Field(
        default=10,
        ge=1,
        le=1000,
        description="Reciprocal rank fusion constant: score = sum of weight / (rrfK + rank).",
    )
    keyword_weight: float = Field(
        default=0.5,
        ge=0,
        le=10,
        description="Weight of the keyword ranking in the fusion, the vector ranking's being 1: keywords "
        "decide exact names and numbers, meaning decides the rest.",
    )
    candidates: int = Field(
        default=50, ge=5, le=1000, description="Results taken from each of keyword and vector before fusion."
    )


class MaintenanceSpec(Model):
    """Store upkeep: an index that is never compacted grows without bound."""

    compact_seconds: int = Field(
        default=6 * 3600, ge=60, le=30 * 86400, description="How often the store is compacted (vacuumed)."
    )
    compact_when_free_ratio: float = Field(
        default=0.2,
        ge=0,
        le=1,
        description="Compact only when at least this share of the store's bytes is free (0: always).",
    )


class KnowledgeBaseSpec(Placement):
    """Desired state of a knowledge base: its sources, model, store and search."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.sources.all(a, self.sources.exists_one(b, b.name == a.name))",
                    "message": "sources[].name must be unique",
                },
                {
                    "rule": "self.replicas == 1 || self.store.type == 'pgvector'",
                    "message": "replicas above 1 need store.type pgvector (the sqlite store is one file)",
                },
            ]
        }
    )

    sources: list[SourceSpec] = Field(min_length=1, max_length=32, description="Where documents come from.")
    embedding: EmbeddingSpec = Field(default_factory=EmbeddingSpec, description="The embedding model.")
    store: StoreSpec = Field(default_factory=StoreSpec, description="Where the index lives.")
    search: SearchSpec = Field(default_factory=SearchSpec, description="How queries find chunks.")
    maintenance: MaintenanceSpec = Field(default_factory=MaintenanceSpec, description="Store upkeep.")
    replicas: int = Field(
        default=1,
        ge=1,
        le=16,
        description="Serving replicas of the knowledge server (more than one needs store.type pgvector; "
        "only the first ingests).",
    )
    resources: ResourceRequirements = Field(
        default_factory=lambda: ResourceRequirements(requests={"cpu": "100m", "memory": "256Mi"}),
        description="Resources of the knowledge server container.",
    )


class KnowledgeBaseConfig(Model):
    """The knowledge server's config file (paths.CONFIG_FILE), rendered by the operator."""

    name: str = Field(pattern=NAME_PATTERN, max_length=63)
    namespace: str = Field(default="default", max_length=63)
    spec: KnowledgeBaseSpec
