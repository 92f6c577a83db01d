"""The shared language of Gruppetto, sans-IO."""
