"""The web app's routers: open pages (health, sign-in), review, on-call and Label Studio."""
