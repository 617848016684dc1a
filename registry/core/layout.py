"""Storage keys of everything the registry keeps (see `storage_backends.base` for the map).

Every function takes already-validated names, tags and digests, so the keys they build never
escape their prefix.
"""

from __future__ import annotations

from ocispec.digest import Digest

BLOBS = "blobs"


def blob(digest: Digest) -> str:
    return f"{BLOBS}/{digest.algorithm}/{digest.encoded[:2]}/{digest.encoded}"


def repository(name: str) -> str:
    return f"repositories/{name}"


def layer_link(name: str, digest: Digest) -> str:
    return f"repositories/{name}/_layers/{digest.algorithm}/{digest.encoded}"


def manifest_revisions(name: str) -> str:
    """`<algorithm>/<hex>` entries below: every manifest of the repository."""
    return f"repositories/{name}/_manifests/revisions"


def manifest_revision(name: str, digest: Digest) -> str:
    return f"{manifest_revisions(name)}/{digest.algorithm}/{digest.encoded}"


def tags_dir(name: str) -> str:
    return f"repositories/{name}/_manifests/tags"


def tag(name: str, tag_name: str) -> str:
    return f"{tags_dir(name)}/{tag_name}"


def referrers_dir(name: str, subject: Digest) -> str:
    return f"repositories/{name}/_referrers/{subject.algorithm}/{subject.encoded}"


def referrer(name: str, subject: Digest, referrer_digest: Digest) -> str:
    return f"{referrers_dir(name, subject)}/{referrer_digest.algorithm}/{referrer_digest.encoded}"


def upload_dir(name: str, upload_id: str) -> str:
    return f"repositories/{name}/_uploads/{upload_id}"


UPLOADS = "uploads"


def upload_state(upload_id: str) -> str:
    """Sessions are listed in one flat prefix, so abandoned ones can be found without a walk."""
    return f"{UPLOADS}/{upload_id}.json"


def upload_data(name: str, upload_id: str) -> str:
    return f"{upload_dir(name, upload_id)}/data"


def upload_hash_state(name: str, upload_id: str) -> str:
    """`<offset>\\n<ResumableHash state>` of the upload's first <offset> bytes (filesystem only)."""
    return f"{upload_dir(name, upload_id)}/hashstate"


TRASH = "trash"


def trashed_blob(digest: Digest) -> str:
    """Content garbage collection has taken out of `blobs/`; any access brings it back."""
    return f"{TRASH}/{digest.algorithm}/{digest.encoded[:2]}/{digest.encoded}/data"


def trashed_since(digest: Digest) -> str:
    return f"{TRASH}/{digest.algorithm}/{digest.encoded[:2]}/{digest.encoded}/since"


CATALOG = "catalog"


def catalog_entry(name: str) -> str:
    """A flat marker per repository, so the catalog is one sorted listing of one prefix."""
    return f"{CATALOG}/{catalog_key(name)}"


def catalog_key(name: str) -> str:
    return name.replace("/", "+")


def catalog_name(key: str) -> str:
    return key.replace("+", "/")


# -- the Hub's records as JSON, before the metadata database: read only by `metadata import` ----
HUB_USERS = "hub/users"
HUB_ORGANIZATIONS = "hub/orgs"
HUB_TOKENS = "hub/tokens"
HUB_REFRESH_TOKENS = "hub/refresh"
HUB_ENDED_SESSIONS = "hub/sessions-ended"


def hub_user(name: str) -> str:
    return f"{HUB_USERS}/{name}.json"


def hub_organization(name: str) -> str:
    return f"{HUB_ORGANIZATIONS}/{name}.json"


def hub_tokens(user: str) -> str:
    return f"{HUB_TOKENS}/{user}"


def repository_settings(name: str) -> str:
    """Visibility, description and stars of a repository (a name may be 255 characters: no suffix fits in one file name)."""
    return f"repositories/{name}/_settings.json"


def repository_webhooks(name: str) -> str:
    return f"repositories/{name}/_webhooks.json"
