"""The email channel: MIME, DKIM, the SMTP connector, the simulator and the bounce listener."""
