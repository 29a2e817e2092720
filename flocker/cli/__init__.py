"""The user's command-line tools: flocker and flocker-deploy."""
