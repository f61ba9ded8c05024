"""The .env store: strict reading and atomic owner-only writes (``envfile``), how other readers
see the same values (``compat``), and owner-only files on POSIX and Windows (``perms``)."""
