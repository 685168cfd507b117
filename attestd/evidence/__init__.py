"""Evidence kept as the law asks: the bytes of what was removed, encrypted to a key the
admin holds, with a record of what was found, why, when and where, for a retention
period (a year by default: the US REPORT Act of 2024), then purged with an audit entry.

``crypto`` (age), ``record`` (the record, pure), ``files`` (where the encrypted bytes
live), ``store`` (the records in the database), ``preserver`` (what hits and the sweep
call), ``report`` (the package an admin files with NCMEC's CyberTipline). Nothing here
files a report by itself.
"""
