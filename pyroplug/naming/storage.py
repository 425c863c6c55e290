"""The name-server storage contract (defined in the kernel, :mod:`pyroplug.core.storage`), re-exported here."""

from pyroplug.core.storage import Listing, Registration, Storage, split_storage_spec

__all__ = ["Listing", "Registration", "Storage", "split_storage_spec"]
