"""pocketbert device: measure exported artifacts on phones (adb, Xcode), ssh boards and this host."""
