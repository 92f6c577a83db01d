"""The console's screens: login and race list, the race, and the modal dialogs."""
