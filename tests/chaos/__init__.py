"""The chaos soak: worker processes acting on a stream of events while workers are killed,
storage stops and freezes, the hub drops connections and every peer slows down and fails."""
