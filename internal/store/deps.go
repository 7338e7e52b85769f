package store

import _ "github.com/cockroachdb/pebble/v2" // placeholder until the store lands
