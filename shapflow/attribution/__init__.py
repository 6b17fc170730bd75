"""An attribute run: request, coalition plan and driver, values report."""
