"""Flag groups shared by several commands: each adds its flags and builds the library object from them."""  # noqa: E501
