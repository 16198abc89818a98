"""Date formats of the admin (settings.FORMAT_MODULE_PATH): a time says its time zone.

Lists, change forms and history pages render datetimes through Django's localised
formats; an operator comparing a change with a Kamailio log must know which zone it is
in (TIME_ZONE may be anything). ISO-like order, 24-hour clock.
"""

DATETIME_FORMAT = "Y-m-d H:i:s T"
SHORT_DATETIME_FORMAT = "Y-m-d H:i T"
DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = "Y-m-d"
TIME_FORMAT = "H:i:s"
