"""Small shared helpers with no better home: errors, atomic file writes, seeding, devices."""
