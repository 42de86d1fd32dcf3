"""Where an agent pod keeps its call records: one volume (the operator mounts a PVC or an emptyDir),
recordings and audit logs in their own directories. Import-light: the operator renders these too."""

RECORDS_DIR = "/var/lib/voicefleet/records"
RECORDINGS_DIR = f"{RECORDS_DIR}/recordings"
AUDIT_DIR = f"{RECORDS_DIR}/audit"
