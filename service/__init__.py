"""The Fast-Forward HTTP search service: Flask app factory, blueprints, errors, the ff-serve CLI.

Importing this package is cheap (no Flask, JVM or torch); ``service.app.create_app`` builds the app.
"""
