"""Model deployment page (issue 6): the model panel and the import form.

The partials fetch their data from the admin API, so the training dashboard can include
them too (``{% include "admin/_model_panel.html" ignore missing %}``).
"""

from flask import render_template

from web.admin import bp
from web.auth import admin_required


@bp.get("/models")
@admin_required
def models():
    return render_template("admin/models.html")
