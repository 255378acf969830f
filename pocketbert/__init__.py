"""pocketbert: from a big BERT teacher to a phone."""
