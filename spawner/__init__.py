"""KioskSpawner: the user's choice → LaunchSpec → one spawn backend."""
