from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from marketdata import api as marketdata_api
from marketdata.views import trading_page
from orders import api
from orders import operations_api as ops

urlpatterns = [
    path("orders", api.OrderCollection.as_view(), name="orders"),
    path("orders/test", api.OrderTest.as_view(), name="order-test"),
    path("orders/<str:order_id>", api.OrderDetail.as_view(), name="order-detail"),
    path("orders/<str:order_id>/cancel", api.OrderCancel.as_view(), name="order-cancel"),
    path("trades", api.TradeList.as_view(), name="trades"),
    path("orderbook", api.OrderBook.as_view(), name="orderbook"),
    path("instruments", api.InstrumentList.as_view(), name="instruments"),
    path("account", api.Account.as_view(), name="account"),
    # analytics, positions and settlement
    path("analytics/vwap", marketdata_api.Vwap.as_view(), name="analytics-vwap"),
    path("klines", marketdata_api.Klines.as_view(), name="klines"),
    path("ticker/24h", marketdata_api.Ticker24h.as_view(), name="ticker-24h"),
    path("positions/<str:client_id>", api.PositionList.as_view(), name="positions"),
    path("settlements", api.SettlementList.as_view(), name="settlements"),
    path("schema", SpectacularAPIView.as_view(), name="schema"),
    # Its script as a file of its own, not inline: the pages' content security policy allows no inline script.
    path("docs", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="docs"),
    # Operations (orders.auth.IsAdmin), ahead of the admin site whose last pattern takes every path.
    path("admin/audit", api.AuditList.as_view(), name="admin-audit"),
    path("admin/snapshot", ops.SnapshotTake.as_view(), name="admin-snapshot"),
    path("admin/snapshots", ops.SnapshotList.as_view(), name="admin-snapshots"),
    path("admin/instruments/<str:symbol>/halt", ops.InstrumentHalt.as_view(), {"halted": True}, name="admin-halt"),
    path("admin/instruments/<str:symbol>/resume", ops.InstrumentHalt.as_view(), {"halted": False},
         name="admin-resume"),
    path("admin/cancel-all", ops.CancelAllOrders.as_view(), name="admin-cancel-all"),
    path("admin/worker", ops.WorkerStateView.as_view(), name="admin-worker"),
    path("admin/commands/<str:command_id>", ops.AdminCommandDetail.as_view(), name="admin-command"),
    path("admin/", admin.site.urls),
    path("api-auth/", include("rest_framework.urls")),  # the browsable API's log in / log out
    path("", trading_page, name="trading"),
]

handler400 = "orders.errors.bad_request"
handler403 = "orders.errors.permission_denied"
handler404 = "orders.errors.not_found"
handler500 = "orders.errors.server_error"
