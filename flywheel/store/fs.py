"""Where a workspace's files live: a local folder or an object store (`s3://bucket/prefix`).

Every workspace path is a `StoragePath`: a `pathlib.Path` for a local workspace (unchanged behaviour), or an
`ObjectPath` for a URI. `ObjectPath` offers the part of the `pathlib` API the workspace code uses (`/`, `name`,
`parent`, `is_file`, `glob`, `read_text`, `open`, `unlink`, `rename`, ...) over a `pyarrow.fs` filesystem, so
`Workspace`, `ShardStore` and the readers keep one code path. The few operations `pathlib` cannot express for
both (Parquet reads and writes, an atomic replace, removing a tree, a DuckDB connection that reads the files)
are the functions of this module, which dispatch on the path type.

An `ObjectPath` pickles as its URI: a Ray worker rebuilds the filesystem from the same environment variables
(AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION), so no credential travels in a task.

On S3 there is no rename: an object appears whole when its single PUT (or multipart completion) ends, so an
atomic write is a direct write of the final key, and completion markers written after their shard keep the
store's protocol. There is no `flock` either: one writer per workspace at a time (see flywheel.store.locks).
"""

from __future__ import annotations

import fnmatch
import functools
import io
import os
import posixpath
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from flywheel.errors import UserError

SCHEMES = ("s3",)
ENV_VARS = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION")


class StorageError(UserError):
    """An object-store workspace that cannot be used: bad URI, missing credentials, no bucket, no endpoint."""


def is_uri(value: str) -> bool:
    """True for `s3://...` (the object stores a workspace may live in)."""
    return any(value.startswith(f"{s}://") for s in SCHEMES)


@functools.lru_cache(maxsize=8)
def _s3(endpoint: str | None, region: str | None, key: str | None, secret: str | None) -> pafs.S3FileSystem:
    """One S3 filesystem per process and settings (the AWS SDK client is costly to build)."""
    scheme = "http" if endpoint and endpoint.startswith("http://") else "https"
    return pafs.S3FileSystem(
        access_key=key,
        secret_key=secret,
        region=region or "us-east-1",
        endpoint_override=endpoint,
        scheme=scheme,
        # Delayed open: a small object is written with one PutObject (atomic, and what S3-compatible
        # servers all accept) instead of a multipart upload.
        allow_delayed_open=True,
        connect_timeout=5,
        request_timeout=30,
        retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=2),
    )


def s3_settings() -> dict[str, str | None]:
    """The standard AWS variables this process sees (endpoint, region, access key, secret)."""
    env = os.environ
    return {
        "endpoint": env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL"),
        "region": env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"),
        "key": env.get("AWS_ACCESS_KEY_ID"),
        "secret": env.get("AWS_SECRET_ACCESS_KEY"),
    }


def s3_filesystem() -> pafs.S3FileSystem:
    """The S3 filesystem for the current environment; StorageError when no credentials are set."""
    s = s3_settings()
    if not (s["key"] and s["secret"]) and not _default_chain_configured():
        raise StorageError(
            "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_ENDPOINT_URL, "
            "AWS_REGION for an S3-compatible server) to use an s3:// workspace"
        )
    return _s3(s["endpoint"], s["region"], s["key"], s["secret"])


def _default_chain_configured() -> bool:
    """True when the AWS SDK's own credential chain has something to find without the key variables: a
    profile or credentials file, a web-identity token (EKS), container credentials (ECS)."""
    env = os.environ
    signals = ("AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
    files = (env.get("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"), env.get("AWS_CONFIG_FILE", "~/.aws/config"))
    return any(env.get(k) for k in signals) or any(Path(f).expanduser().is_file() for f in files)


@dataclass(frozen=True)
class _Stat:
    st_size: int
    st_mtime: float
    st_mtime_ns: int
    st_ino: int = 0  # objects have no inode; the modification time is what tells versions apart


@dataclass(frozen=True, order=True)
class ObjectPath:
    """A key (or key prefix, a "folder") in an object store, with the pathlib methods the workspace uses."""

    uri: str

    def __post_init__(self) -> None:
        scheme, sep, rest = self.uri.partition("://")
        if scheme not in SCHEMES or not sep:
            raise StorageError(f"{self.uri!r} is not an object-store URI (expected s3://bucket/prefix)")
        bucket, _, key = rest.partition("/")
        if not bucket:
            raise StorageError(f"{self.uri!r} names no bucket (expected s3://bucket/prefix)")
        key = posixpath.normpath(key) if key.strip("/") else ""
        key = "" if key == "." else key.strip("/")
        object.__setattr__(self, "uri", f"{scheme}://{bucket}" + (f"/{key}" if key else ""))

    # -- pure path operations --
    @property
    def fs_path(self) -> str:
        """`bucket/key`, the path pyarrow's filesystem takes."""
        return self.uri.partition("://")[2]

    @property
    def bucket(self) -> str:
        return self.fs_path.partition("/")[0]

    @property
    def filesystem(self) -> pafs.FileSystem:
        return s3_filesystem()

    def __str__(self) -> str:
        return self.uri

    def __truediv__(self, other: str | os.PathLike[str]) -> ObjectPath:
        return ObjectPath(f"{self.uri}/{os.fspath(other)}")

    @property
    def name(self) -> str:
        key = self.fs_path.partition("/")[2]
        return posixpath.basename(key)

    @property
    def stem(self) -> str:
        return posixpath.splitext(self.name)[0]  # as pathlib: the name without its last suffix

    @property
    def suffix(self) -> str:
        return posixpath.splitext(self.name)[1]

    @property
    def parent(self) -> ObjectPath:
        scheme = self.uri.partition("://")[0]
        return ObjectPath(f"{scheme}://{posixpath.dirname(self.fs_path)}") if "/" in self.fs_path else self

    @property
    def parents(self) -> list[ObjectPath]:
        """Every prefix above this one, up to the bucket."""
        out: list[ObjectPath] = []
        p = self
        while p.parent != p:
            p = p.parent
            out.append(p)
        return out

    def with_name(self, name: str) -> ObjectPath:
        return self.parent / name

    def resolve(self) -> ObjectPath:
        return self  # keys are normalised when the path is built

    def expanduser(self) -> ObjectPath:
        return self

    # -- queries --
    def _info(self) -> pafs.FileInfo:
        try:
            return self.filesystem.get_file_info(self.fs_path)
        except OSError as exc:
            raise storage_error(self, exc) from None

    def exists(self) -> bool:
        return self._info().type != pafs.FileType.NotFound

    def is_file(self) -> bool:
        return self._info().type == pafs.FileType.File

    def is_dir(self) -> bool:
        return self._info().type == pafs.FileType.Directory

    def stat(self) -> _Stat:
        info = self._info()
        if info.type != pafs.FileType.File:
            raise FileNotFoundError(f"{self}: no such object")
        mtime = info.mtime.timestamp() if info.mtime else 0.0
        return _Stat(int(info.size or 0), mtime, int(info.mtime_ns or 0))

    def iterdir(self) -> Iterator[ObjectPath]:
        selector = pafs.FileSelector(self.fs_path, allow_not_found=True, recursive=False)
        for info in sorted(self.filesystem.get_file_info(selector), key=lambda i: i.path):
            yield self / posixpath.basename(info.path)

    def glob(self, pattern: str) -> Iterator[ObjectPath]:
        """Children whose name matches `pattern` (one level, as the workspace's globs are)."""
        if "/" in pattern:
            raise ValueError(f"ObjectPath.glob takes a name pattern, not {pattern!r}")
        return (p for p in self.iterdir() if fnmatch.fnmatchcase(p.name, pattern))

    # -- reads and writes --
    def open(self, mode: str = "rb", encoding: str | None = None) -> IO[Any]:
        fs = self.filesystem
        try:
            if mode in ("rb", "r"):
                raw: Any = fs.open_input_file(self.fs_path)
            elif mode in ("wb", "w"):
                raw = fs.open_output_stream(self.fs_path)
            elif mode in ("ab", "a"):  # objects cannot grow: the whole object is rewritten on close
                raw = _Appender(self)
            else:
                raise ValueError(f"ObjectPath.open supports r, rb, w, wb, a, ab, not {mode!r}")
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise storage_error(self, exc) from None
        return io.TextIOWrapper(raw, encoding=encoding or "utf-8") if "b" not in mode else raw

    def read_bytes(self) -> bytes:
        with self.open("rb") as fh:
            return fh.read()

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def write_bytes(self, data: bytes) -> int:
        with self.open("wb") as fh:  # one PUT when the stream closes: the object appears whole or not at all
            fh.write(data)
        return len(data)

    def write_text(self, text: str, encoding: str = "utf-8") -> int:
        return self.write_bytes(text.encode(encoding))

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        """Nothing to do: an object store has no folders, a prefix exists once an object is under it."""

    def unlink(self, missing_ok: bool = False) -> None:
        try:
            self.filesystem.delete_file(self.fs_path)
        except FileNotFoundError:
            if not missing_ok:
                raise

    def rename(self, target: ObjectPath) -> ObjectPath:
        """Move an object, or every object under a prefix (copy then delete: S3 has no rename)."""
        fs = self.filesystem
        info = self._info()
        if info.type == pafs.FileType.File:
            fs.move(self.fs_path, target.fs_path)
            return target
        selector = pafs.FileSelector(self.fs_path, allow_not_found=True, recursive=True)
        for item in fs.get_file_info(selector):
            if item.type == pafs.FileType.File:
                fs.copy_file(item.path, target.fs_path + item.path[len(self.fs_path) :])
        rmtree(self)
        return target


class _Appender(io.BytesIO):
    """An append to an object: the old content plus what was written, in one PUT on close (run logs)."""

    def __init__(self, path: ObjectPath) -> None:
        super().__init__(path.read_bytes() if path.is_file() else b"")
        self.seek(0, io.SEEK_END)
        self._path = path

    def close(self) -> None:
        if not self.closed:
            self._path.write_bytes(self.getvalue())
        super().close()


StoragePath = Path | ObjectPath


def storage_path(value: str | os.PathLike[str] | ObjectPath) -> StoragePath:
    """A workspace path from what a user typed: a URI stays a URI, anything else is a local path."""
    if isinstance(value, ObjectPath):
        return value
    text = os.fspath(value)
    return ObjectPath(text) if is_uri(text) else Path(text)


def storage_error(path: ObjectPath, exc: OSError) -> StorageError:
    """One line for a failed object-store call: which workspace, which endpoint, and what went wrong."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    endpoint = s3_settings()["endpoint"] or "AWS S3"
    return StorageError(f"{path}: object store at {endpoint} failed: {first}")


def check_bucket(path: ObjectPath) -> None:
    """Fail now, in one line, when the bucket is missing or the endpoint unreachable (not on the first write)."""
    try:
        info = path.filesystem.get_file_info(path.bucket)
    except OSError as exc:
        raise storage_error(path, exc) from None
    if info.type == pafs.FileType.NotFound:
        endpoint = s3_settings()["endpoint"] or "AWS S3"
        raise StorageError(f"{path}: bucket {path.bucket!r} does not exist at {endpoint}; create it first")


# -- operations pathlib has no common form for --


def replace_bytes(path: StoragePath, data: bytes) -> None:
    """Write `data` atomically: readers see the old content or the new one, never half of it."""
    if isinstance(path, ObjectPath):
        path.write_bytes(data)  # a single PUT is atomic
        return
    import uuid

    tmp = path.with_name(f"{path.name}.tmp-{uuid.uuid4().hex}")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


@contextmanager
def atomic_writer(path: StoragePath) -> Iterator[IO[bytes]]:
    """A binary file whose content appears at `path` whole when the block ends, and not at all on an error.

    Local: a temporary name, fsync, rename. Object store: the bytes are buffered and sent in one PUT.
    """
    if isinstance(path, ObjectPath):
        buf = io.BytesIO()
        yield buf
        path.write_bytes(buf.getvalue())
        return
    import uuid

    tmp = path.with_name(f"{path.name}.tmp-{uuid.uuid4().hex}")
    try:
        with tmp.open("wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def staging_dir(folder: StoragePath) -> Path:
    """A fresh local folder to build `folder`'s files in before `publish_dir` (beside it when local)."""
    if isinstance(folder, ObjectPath):
        import tempfile

        return Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-"))
    import uuid

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    return tmp


def publish_dir(tmp: Path, folder: StoragePath, last: str) -> None:
    """Replace `folder` with the staged `tmp` (a rename when local; an upload with file `last` uploaded last,
    the one readers check for completeness, on an object store)."""
    if folder.exists():
        rmtree(folder)
    if isinstance(folder, ObjectPath):
        names = sorted(os.listdir(tmp), key=lambda n: n == last)
        for name in names:
            (folder / name).write_bytes((tmp / name).read_bytes())
        shutil.rmtree(tmp)
        return
    os.replace(tmp, folder)


def rmtree(path: StoragePath, ignore_errors: bool = False) -> None:
    """Remove a folder (or every object under a prefix) and what it holds."""
    if isinstance(path, ObjectPath):
        try:
            path.filesystem.delete_dir_contents(path.fs_path, missing_dir_ok=True)
            if path.is_dir():
                path.filesystem.delete_dir(path.fs_path)
        except OSError:
            if not ignore_errors:
                raise
        return
    shutil.rmtree(path, ignore_errors=ignore_errors)


def relpath(target: StoragePath, start: StoragePath) -> str:
    """`target` relative to the folder `start` (both in the same store)."""
    if isinstance(target, ObjectPath) and isinstance(start, ObjectPath):
        return posixpath.relpath(target.fs_path, start.fs_path)
    return os.path.relpath(target, start)


def _arrow(path: StoragePath | str) -> tuple[str, pafs.FileSystem | None]:
    path = storage_path(path) if isinstance(path, str) else path
    return (path.fs_path, path.filesystem) if isinstance(path, ObjectPath) else (str(path), None)


def read_table(path: StoragePath | str, columns: list[str] | None = None) -> pa.Table:
    where, fs = _arrow(path)
    return pq.read_table(where, columns=columns, filesystem=fs)


def read_schema(path: StoragePath | str) -> pa.Schema:
    where, fs = _arrow(path)
    return pq.read_schema(where, filesystem=fs)


def parquet_file(path: StoragePath | str) -> pq.ParquetFile:
    where, fs = _arrow(path)
    return pq.ParquetFile(where, filesystem=fs)


def write_table(table: pa.Table, path: StoragePath | str, **options: Any) -> None:
    """`pq.write_table` to a local file or an object (options: pq.write_table's, e.g. compression)."""
    where, fs = _arrow(path)
    pq.write_table(table, where, filesystem=fs, **options)


def duckdb_connect(*where: StoragePath | str) -> Any:
    """A DuckDB connection that can `read_parquet` paths like `where` (object-store URIs included).

    DuckDB's httpfs extension is downloaded on first use, which an offline machine cannot do; an object
    store is instead registered as an fsspec filesystem over the same pyarrow client.
    """
    import duckdb

    con = duckdb.connect()
    if any(isinstance(p, ObjectPath) or is_uri(str(p)) for p in where):
        con.register_filesystem(_fsspec_s3())
    return con


def _fsspec_s3() -> Any:
    from fsspec.implementations.arrow import ArrowFSWrapper

    class _S3Wrapper(ArrowFSWrapper):  # type: ignore[misc]
        protocol = ("s3", "s3a")

    return _S3Wrapper(s3_filesystem())


def worker_env() -> dict[str, Any]:
    """Ray remote args that hand this process's AWS variables to a task (none set: no args).

    Workers started before the variables were set (a long-lived local Ray, a cluster node) would otherwise
    open `s3://` paths without the endpoint or credentials.
    """
    env = {k: os.environ[k] for k in (*ENV_VARS, "AWS_ENDPOINT_URL_S3", "AWS_PROFILE") if os.environ.get(k)}
    return {"runtime_env": {"env_vars": env}} if env else {}


def lance_storage_options(path: StoragePath) -> dict[str, str] | None:
    """LanceDB `storage_options` for an object-store workspace (None for a local one)."""
    if not isinstance(path, ObjectPath):
        return None
    s3_filesystem()  # the credentials check
    s = s3_settings()
    options = {"aws_access_key_id": s["key"] or "", "aws_secret_access_key": s["secret"] or ""}
    options["aws_region"] = s["region"] or "us-east-1"
    if s["endpoint"]:
        options["aws_endpoint"] = s["endpoint"]
        if s["endpoint"].startswith("http://"):
            options["allow_http"] = "true"
    return {k: v for k, v in options.items() if v}
