"""A small AdventureWorks-like operational schema, built in any SQLAlchemy engine (PostgreSQL,
MariaDB/MySQL, SQLite) from one definition in SQLAlchemy's generic types: the source of the
``adventureworks`` pipeline's demo and tests.

Nine related tables in the style of AdventureWorksLT's ``SalesLT`` schema: Customer, Address,
CustomerAddress (composite key), ProductCategory (self-reference), ProductModel, Product,
SalesOrderHeader, SalesOrderDetail (composite key) and ErrorLog (no primary key), with the awkward
types: numeric(19,4) money amounts, a time-zone-aware timestamp (PostgreSQL timestamptz, MariaDB
TIMESTAMP), naive timestamps, binary (bytea/BLOB), uuid ``rowguid``, boolean, nullable columns,
XML-like text (PostgreSQL ``xml``), and ``ModifiedDate`` on every table but ErrorLog.

Rows are generated from a seed, so the same ``scale`` always gives the same rows. ``add_table``,
``apply_changes`` and ``add_column`` change the source between two runs, as tests and the demo need;
``read_all`` returns every row of every table, for comparing with the lake.
"""

from __future__ import annotations

import datetime as dt
import decimal
import random
import uuid
import warnings

SEED = 20250101
BASE = dt.datetime(2024, 12, 1, 8, 0, 0)  # generated ModifiedDate values lie before the first run
TABLES = (
    "ProductCategory",
    "ProductModel",
    "Product",
    "Customer",
    "Address",
    "CustomerAddress",
    "SalesOrderHeader",
    "SalesOrderDetail",
    "ErrorLog",
)
ADDED_TABLE = "ProductDescription"
ADDED_COLUMN = ("Customer", "Suffix")


def _types():
    import sqlalchemy as sa
    from sqlalchemy.dialects import mysql

    class Xml(sa.types.UserDefinedType):
        cache_ok = True

        def get_col_spec(self, **kw):
            return "XML"

    money = sa.Numeric(19, 4)
    naive = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
    aware = sa.DateTime(timezone=True).with_variant(mysql.TIMESTAMP(fsp=6), "mysql", "mariadb")
    xml = sa.Text().with_variant(Xml(), "postgresql")
    return money, naive, aware, xml


def metadata(schema: str | None):
    """The schema's tables (without the one ``add_table`` adds)."""
    import sqlalchemy as sa

    money, naive, aware, xml = _types()
    md = sa.MetaData(schema=schema)
    prefix = f"{schema}." if schema else ""

    def common():
        return [
            sa.Column("rowguid", sa.Uuid, nullable=False),
            sa.Column("ModifiedDate", naive, nullable=False),
        ]

    sa.Table(
        "ProductCategory",
        md,
        sa.Column("ProductCategoryID", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column(
            "ParentProductCategoryID", sa.Integer, sa.ForeignKey(f"{prefix}ProductCategory.ProductCategoryID")
        ),
        sa.Column("Name", sa.String(50), nullable=False),
        *common(),
    )
    sa.Table(
        "ProductModel",
        md,
        sa.Column("ProductModelID", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("Name", sa.String(50), nullable=False),
        sa.Column("CatalogDescription", xml),
        *common(),
    )
    sa.Table(
        "Product",
        md,
        sa.Column("ProductID", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("Name", sa.String(50), nullable=False),
        sa.Column("ProductNumber", sa.String(25), nullable=False),
        sa.Column("Color", sa.String(15)),
        sa.Column("StandardCost", money, nullable=False),
        sa.Column("ListPrice", money, nullable=False),
        sa.Column("Weight", sa.Numeric(8, 2)),
        sa.Column(
            "ProductCategoryID", sa.Integer, sa.ForeignKey(f"{prefix}ProductCategory.ProductCategoryID")
        ),
        sa.Column("ProductModelID", sa.Integer, sa.ForeignKey(f"{prefix}ProductModel.ProductModelID")),
        sa.Column("SellStartDate", naive, nullable=False),
        sa.Column("SellEndDate", naive),
        sa.Column("ThumbNailPhoto", sa.LargeBinary),
        *common(),
    )
    sa.Table(
        "Customer",
        md,
        sa.Column("CustomerID", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("NameStyle", sa.Boolean, nullable=False),
        sa.Column("Title", sa.String(8)),
        sa.Column("FirstName", sa.String(50), nullable=False),
        sa.Column("MiddleName", sa.String(50)),
        sa.Column("LastName", sa.String(50), nullable=False),
        sa.Column("CompanyName", sa.String(128)),
        sa.Column("EmailAddress", sa.String(50)),
        sa.Column("PasswordHash", sa.LargeBinary, nullable=False),
        *common(),
    )
    sa.Table(
        "Address",
        md,
        sa.Column("AddressID", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("AddressLine1", sa.String(60), nullable=False),
        sa.Column("AddressLine2", sa.String(60)),
        sa.Column("City", sa.String(30), nullable=False),
        sa.Column("StateProvince", sa.String(50), nullable=False),
        sa.Column("CountryRegion", sa.String(50), nullable=False),
        sa.Column("PostalCode", sa.String(15), nullable=False),
        *common(),
    )
    sa.Table(
        "CustomerAddress",
        md,
        sa.Column("CustomerID", sa.Integer, sa.ForeignKey(f"{prefix}Customer.CustomerID"), primary_key=True),
        sa.Column("AddressID", sa.Integer, sa.ForeignKey(f"{prefix}Address.AddressID"), primary_key=True),
        sa.Column("AddressType", sa.String(50), nullable=False),
        *common(),
    )
    sa.Table(
        "SalesOrderHeader",
        md,
        sa.Column("SalesOrderID", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("RevisionNumber", sa.SmallInteger, nullable=False),
        sa.Column("OrderDate", aware, nullable=False),
        sa.Column("DueDate", sa.Date, nullable=False),
        sa.Column("ShipDate", naive),
        sa.Column("OnlineOrderFlag", sa.Boolean, nullable=False),
        sa.Column("CustomerID", sa.Integer, sa.ForeignKey(f"{prefix}Customer.CustomerID"), nullable=False),
        sa.Column("ShipToAddressID", sa.Integer, sa.ForeignKey(f"{prefix}Address.AddressID")),
        sa.Column("SubTotal", money, nullable=False),
        sa.Column("TaxAmt", money, nullable=False),
        sa.Column("Freight", money, nullable=False),
        sa.Column("Comment", sa.Text),
        *common(),
    )
    sa.Table(
        "SalesOrderDetail",
        md,
        sa.Column(
            "SalesOrderID",
            sa.Integer,
            sa.ForeignKey(f"{prefix}SalesOrderHeader.SalesOrderID"),
            primary_key=True,
        ),
        sa.Column("SalesOrderDetailID", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("OrderQty", sa.SmallInteger, nullable=False),
        sa.Column("ProductID", sa.Integer, sa.ForeignKey(f"{prefix}Product.ProductID"), nullable=False),
        sa.Column("UnitPrice", money, nullable=False),
        sa.Column("UnitPriceDiscount", money, nullable=False),
        sa.Column("LineTotal", sa.Numeric(38, 6), nullable=False),
        *common(),
    )
    sa.Table(
        "ErrorLog",
        md,
        sa.Column("ErrorTime", aware, nullable=False),
        sa.Column("UserName", sa.String(128), nullable=False),
        sa.Column("ErrorNumber", sa.Integer, nullable=False),
        sa.Column("ErrorSeverity", sa.Integer),
        sa.Column("ErrorMessage", sa.Text, nullable=False),
        sa.Column("ModifiedDate", naive),  # nullable, and no primary key: copied in full
    )
    return md


def _added_table(md):
    import sqlalchemy as sa

    _, naive, _, _ = _types()
    return sa.Table(
        ADDED_TABLE,
        md,
        sa.Column("ProductDescriptionID", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("Description", sa.String(400), nullable=False),
        sa.Column("rowguid", sa.Uuid, nullable=False),
        sa.Column("ModifiedDate", naive, nullable=False),
    )


def _guid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def _money(rng: random.Random, low: int, high: int) -> decimal.Decimal:
    return decimal.Decimal(rng.randint(low * 10_000, high * 10_000)).scaleb(-4)


def _moment(rng: random.Random, days: int = 20) -> dt.datetime:
    """A naive timestamp before the first run's window, with microseconds."""
    return BASE + dt.timedelta(seconds=rng.randint(0, days * 86_400), microseconds=rng.randint(0, 999_999))


def rows(scale: int = 1, seed: int = SEED) -> dict[str, list[dict]]:
    """The generated rows of every table (``scale`` multiplies the customer/order counts)."""
    rng = random.Random(seed)
    out: dict[str, list[dict]] = {name: [] for name in TABLES}
    categories = ["Bikes", "Components", "Clothing", "Accessories", "Road Bikes", "Mountain Bikes", "Helmets"]
    for i, name in enumerate(categories, start=1):
        parent = None if i <= 4 else (1 if "Bikes" in name else 4)
        out["ProductCategory"].append(
            {
                "ProductCategoryID": i,
                "ParentProductCategoryID": parent,
                "Name": name,
                "rowguid": _guid(rng),
                "ModifiedDate": _moment(rng),
            }
        )
    for i in range(1, 6):
        description = (
            None
            if i % 3 == 0
            else f'<ProductDescription ProductModelID="{i}"><Summary>Model {i} &amp; more</Summary>'
            "</ProductDescription>"
        )
        out["ProductModel"].append(
            {
                "ProductModelID": i,
                "Name": f"Model {i}",
                "CatalogDescription": description,
                "rowguid": _guid(rng),
                "ModifiedDate": _moment(rng),
            }
        )
    colors = [None, "Black", "Red", "Silver", "Multi"]
    for i in range(1, 12 * scale + 1):
        cost = _money(rng, 1, 900)
        out["Product"].append(
            {
                "ProductID": 700 + i,
                "Name": f"Product {i} ünïcode",
                "ProductNumber": f"PR-{i:05d}",
                "Color": colors[i % len(colors)],
                "StandardCost": cost,
                "ListPrice": cost * 2 + decimal.Decimal("0.9999"),
                "Weight": None if i % 4 == 0 else decimal.Decimal(rng.randint(100, 99_999)).scaleb(-2),
                "ProductCategoryID": 1 + i % len(categories),
                "ProductModelID": None if i % 5 == 0 else 1 + i % 5,
                "SellStartDate": _moment(rng, 400) - dt.timedelta(days=400),
                "SellEndDate": None if i % 3 else _moment(rng),
                "ThumbNailPhoto": None
                if i % 2
                else bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 64))),
                "rowguid": _guid(rng),
                "ModifiedDate": _moment(rng),
            }
        )
    first = ["Orlando", "Keith", "Donna", "Janet", "Lucy", "Rosmarie", "Dominic", "Kathleen"]
    last = ["Gee", "Harris", "Carreras", "Gates", "Harrington", "Carroll", "Gash", "Garza"]
    customers = 10 * scale
    for i in range(1, customers + 1):
        out["Customer"].append(
            {
                "CustomerID": i,
                "NameStyle": i % 7 == 0,
                "Title": None if i % 3 == 0 else ("Mr." if i % 2 else "Ms."),
                "FirstName": first[i % len(first)],
                "MiddleName": None if i % 2 else "J.",
                "LastName": last[(i * 3) % len(last)],
                "CompanyName": f"Bike Shop {i}" if i % 4 else None,
                "EmailAddress": f"customer{i}@example.com",
                "PasswordHash": bytes(rng.getrandbits(8) for _ in range(32)),
                "rowguid": _guid(rng),
                "ModifiedDate": _moment(rng),
            }
        )
        out["Address"].append(
            {
                "AddressID": 100 + i,
                "AddressLine1": f"{i} Main St.",
                "AddressLine2": None if i % 2 else f"Suite {i}",
                "City": "Bothell" if i % 2 else "Zürich",
                "StateProvince": "Washington",
                "CountryRegion": "United States",
                "PostalCode": f"{98000 + i}",
                "rowguid": _guid(rng),
                "ModifiedDate": _moment(rng),
            }
        )
        out["CustomerAddress"].append(
            {
                "CustomerID": i,
                "AddressID": 100 + i,
                "AddressType": "Main Office",
                "rowguid": _guid(rng),
                "ModifiedDate": _moment(rng),
            }
        )
        if i % 3 == 0:
            out["CustomerAddress"].append(
                {
                    "CustomerID": i,
                    "AddressID": 100 + (i % customers) + 1,
                    "AddressType": "Shipping",
                    "rowguid": _guid(rng),
                    "ModifiedDate": _moment(rng),
                }
            )
    detail = 0
    for n in range(1, 15 * scale + 1):
        order_id = 71_000 + n
        ordered = (_moment(rng) - dt.timedelta(days=5)).replace(tzinfo=dt.UTC)
        lines = []
        for _ in range(rng.randint(1, 4)):
            detail += 1
            price = _money(rng, 1, 2000)
            discount = decimal.Decimal(rng.choice([0, 200, 500])).scaleb(-4)
            qty = rng.randint(1, 20)
            lines.append(
                {
                    "SalesOrderID": order_id,
                    "SalesOrderDetailID": 110_000 + detail,
                    "OrderQty": qty,
                    "ProductID": 700 + rng.randint(1, 12 * scale),
                    "UnitPrice": price,
                    "UnitPriceDiscount": discount,
                    "LineTotal": (price * qty * (1 - discount)).quantize(decimal.Decimal("0.000001")),
                    "rowguid": _guid(rng),
                    "ModifiedDate": _moment(rng),
                }
            )
        subtotal = sum((line["LineTotal"] for line in lines), decimal.Decimal(0)).quantize(
            decimal.Decimal("0.0001")
        )
        customer = rng.randint(1, customers)
        out["SalesOrderHeader"].append(
            {
                "SalesOrderID": order_id,
                "RevisionNumber": 2,
                "OrderDate": ordered,
                "DueDate": (ordered + dt.timedelta(days=12)).date(),
                "ShipDate": None if n % 5 == 0 else ordered.replace(tzinfo=None) + dt.timedelta(days=7),
                "OnlineOrderFlag": n % 2 == 0,
                "CustomerID": customer,
                "ShipToAddressID": None if n % 6 == 0 else 100 + customer,
                "SubTotal": subtotal,
                "TaxAmt": (subtotal * decimal.Decimal("0.08")).quantize(decimal.Decimal("0.0001")),
                "Freight": (subtotal * decimal.Decimal("0.025")).quantize(decimal.Decimal("0.0001")),
                "Comment": None if n % 4 else "Leave at the door; 'quoted' \"text\"",
                "rowguid": _guid(rng),
                "ModifiedDate": _moment(rng),
            }
        )
        out["SalesOrderDetail"].extend(lines)
    for n in range(1, 4 + scale):
        out["ErrorLog"].append(
            {
                "ErrorTime": _moment(rng).replace(tzinfo=dt.UTC),
                "UserName": "dbo",
                "ErrorNumber": 50_000 + n,
                "ErrorSeverity": None if n % 2 else 16,
                "ErrorMessage": f"Error {n}: deadlock victim",
                "ModifiedDate": None if n % 2 else _moment(rng),
            }
        )
    return out


def create(engine, schema: str | None = None, scale: int = 1) -> dict[str, int]:
    """Create the tables in ``schema`` (which must exist; None: the default) and fill them.
    Returns the row count of each table."""
    md = metadata(schema)
    data = rows(scale)
    with engine.begin() as conn:
        md.create_all(conn)
        for name in TABLES:
            if data[name]:
                conn.execute(md.tables[_key(schema, name)].insert(), data[name])
    return {name: len(data[name]) for name in TABLES}


def _key(schema: str | None, name: str) -> str:
    return f"{schema}.{name}" if schema else name


def add_table(engine, schema: str | None = None, moment: dt.datetime | None = None) -> str:
    """Create and fill ``ProductDescription`` (a table added to the source between two runs)."""
    import sqlalchemy as sa

    rng = random.Random(SEED + 1)
    table = _added_table(sa.MetaData(schema=schema))
    modified = moment.replace(tzinfo=None) if moment else BASE
    with engine.begin() as conn:
        table.create(conn)
        conn.execute(
            table.insert(),
            [
                {
                    "ProductDescriptionID": i,
                    "Description": f"Description {i}: light, strong — «quoted»",
                    "rowguid": _guid(rng),
                    "ModifiedDate": modified + dt.timedelta(minutes=i),
                }
                for i in range(1, 6)
            ],
        )
    return ADDED_TABLE


def apply_changes(engine, schema: str | None = None, moment: dt.datetime | None = None) -> dict[str, list]:
    """Updates and inserts stamped ``ModifiedDate = moment`` (a naive UTC wall time; an aware
    moment is converted to UTC): two customers renamed, one order's freight changed, one new
    customer and one new order with a line. Returns the changed keys of each table."""
    import sqlalchemy as sa

    if moment is None:
        raise ValueError("apply_changes needs the moment the changes are made at")
    stamp = moment.astimezone(dt.UTC).replace(tzinfo=None) if moment.tzinfo else moment
    md = metadata(schema)
    t = {name: md.tables[_key(schema, name)] for name in TABLES}
    rng = random.Random(SEED + 2)
    changed: dict[str, list] = {"Customer": [], "SalesOrderHeader": [], "SalesOrderDetail": []}
    with engine.begin() as conn:
        new_customer = conn.scalar(sa.select(sa.func.max(t["Customer"].c.CustomerID))) + 1
        for customer in (1, 2):
            conn.execute(
                t["Customer"]
                .update()
                .where(t["Customer"].c.CustomerID == customer)
                .values(LastName=f"Changed {customer}", MiddleName=None, ModifiedDate=stamp)
            )
            changed["Customer"].append(customer)
        conn.execute(
            t["Customer"].insert(),
            {
                "CustomerID": new_customer,
                "NameStyle": True,
                "Title": None,
                "FirstName": "New",
                "MiddleName": None,
                "LastName": "Customer",
                "CompanyName": None,
                "EmailAddress": None,
                "PasswordHash": bytes(range(16)),
                "rowguid": _guid(rng),
                "ModifiedDate": stamp,
            },
        )
        changed["Customer"].append(new_customer)
        first_order = conn.scalar(sa.select(sa.func.min(t["SalesOrderHeader"].c.SalesOrderID)))
        conn.execute(
            t["SalesOrderHeader"]
            .update()
            .where(t["SalesOrderHeader"].c.SalesOrderID == first_order)
            .values(Freight=decimal.Decimal("12345.6789"), ModifiedDate=stamp)
        )
        order = conn.scalar(sa.select(sa.func.max(t["SalesOrderHeader"].c.SalesOrderID))) + 1
        conn.execute(
            t["SalesOrderHeader"].insert(),
            {
                "SalesOrderID": order,
                "RevisionNumber": 1,
                "OrderDate": moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC),
                "DueDate": stamp.date(),
                "ShipDate": None,
                "OnlineOrderFlag": True,
                "CustomerID": new_customer,
                "ShipToAddressID": None,
                "SubTotal": decimal.Decimal("99.9900"),
                "TaxAmt": decimal.Decimal("7.9992"),
                "Freight": decimal.Decimal("0.0001"),
                "Comment": None,
                "rowguid": _guid(rng),
                "ModifiedDate": stamp,
            },
        )
        changed["SalesOrderHeader"] += [first_order, order]
        detail = conn.scalar(sa.select(sa.func.max(t["SalesOrderDetail"].c.SalesOrderDetailID))) + 1
        conn.execute(
            t["SalesOrderDetail"].insert(),
            {
                "SalesOrderID": order,
                "SalesOrderDetailID": detail,
                "OrderQty": 1,
                "ProductID": 701,
                "UnitPrice": decimal.Decimal("99.9900"),
                "UnitPriceDiscount": decimal.Decimal(0),
                "LineTotal": decimal.Decimal("99.990000"),
                "rowguid": _guid(rng),
                "ModifiedDate": stamp,
            },
        )
        changed["SalesOrderDetail"].append((order, detail))
    return changed


def add_column(
    engine, schema: str | None = None, table: str = ADDED_COLUMN[0], column: str = ADDED_COLUMN[1]
):
    """Add a nullable text column to a source table and fill it for one row (the first key)."""
    import sqlalchemy as sa

    preparer = engine.dialect.identifier_preparer
    target = (
        preparer.quote(table) if not schema else f"{preparer.quote_schema(schema)}.{preparer.quote(table)}"
    )
    with engine.begin() as conn:
        conn.exec_driver_sql(f"ALTER TABLE {target} ADD {preparer.quote(column)} VARCHAR(10)")
        reflected = sa.Table(table, sa.MetaData(schema=schema), autoload_with=conn)
        key = next(iter(reflected.primary_key.columns))
        first = conn.scalar(sa.select(sa.func.min(key)))
        conn.execute(reflected.update().where(key == first).values({column: "Jr."}))


def read_all(engine, schema: str | None = None) -> dict[str, list[dict]]:
    """Every row of every table in the schema, as the database returns them (reflected types)."""
    import sqlalchemy as sa

    out = {}
    with engine.connect() as conn:
        if engine.dialect.name in ("mysql", "mariadb"):
            conn.exec_driver_sql("SET time_zone = '+00:00'")
        inspector = sa.inspect(conn)
        for name in inspector.get_table_names(schema=schema):
            with warnings.catch_warnings():  # PostgreSQL's xml: SQLAlchemy reads it as text
                warnings.filterwarnings("ignore", "Did not recognize type", category=Warning)
                table = sa.Table(name, sa.MetaData(schema=schema), autoload_with=conn)
            out[name] = [dict(row._mapping) for row in conn.execute(sa.select(table))]
    return out
